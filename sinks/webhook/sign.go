package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"strconv"
)

// Signature headers.
const (
	HeaderFraiseQLSignature = "X-FraiseQL-Signature-256"
	HeaderWebhookID         = "Webhook-Id"
	HeaderWebhookTimestamp  = "Webhook-Timestamp"
	HeaderWebhookSignature  = "Webhook-Signature"
)

// signer adds the signature headers of one format. It is immutable and safe for
// concurrent use.
type signer struct {
	format string
	keys   [][]byte
}

// sign sets the signature headers of a request with message id id, attempt time ts
// (unix seconds) and exactly the body bytes sent. Several keys (a rotation) give
// several signatures: "t=…,v1=…,v1=…" or "v1,… v1,…".
func (s *signer) sign(h http.Header, id string, ts int64, body []byte) {
	t := strconv.FormatInt(ts, 10)
	var b []byte
	switch s.format {
	case FormatStandard:
		for i, k := range s.keys {
			if i > 0 {
				b = append(b, ' ')
			}
			b = append(b, "v1,"...)
			b = base64.StdEncoding.AppendEncode(b, mac(k, id+"."+t+".", body))
		}
		h.Set(HeaderWebhookID, id)
		h.Set(HeaderWebhookTimestamp, t)
		h.Set(HeaderWebhookSignature, string(b))
	default:
		b = append(b, "t="...)
		b = append(b, t...)
		for _, k := range s.keys {
			b = append(b, ",v1="...)
			b = hex.AppendEncode(b, mac(k, t+".", body))
		}
		h.Set(HeaderFraiseQLSignature, string(b))
	}
}

// mac returns HMAC-SHA256 of prefix followed by body, under key.
func mac(key []byte, prefix string, body []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(prefix))
	m.Write(body)
	return m.Sum(nil)
}
