package email

import (
	"bytes"
	"errors"
	"mime"
	"mime/quotedprintable"
	"net/mail"
	"strings"
	"time"
	"unicode/utf8"
)

// Limits of RFC 5322 §2.1.1: lines should be at most 78 characters and must be at
// most 998, without the CRLF.
const (
	foldAt      = 78
	maxLineLen  = 998
	idDomain    = "fraiseql-observers"
	eventHeader = "X-FraiseQL-Event-ID"
)

// errHeaderInjection is the cause of a header value holding a line break.
var errHeaderInjection = errors.New("header value holds a CR, LF or NUL character")

// checkHeaderValue refuses values that would end the header line and start another
// (header injection), and NUL.
func checkHeaderValue(s string) error {
	if strings.ContainsAny(s, "\r\n\x00") {
		return errHeaderInjection
	}
	return nil
}

// message is one email ready to be sent.
type message struct {
	from *mail.Address
	to   []*mail.Address
	data []byte // the RFC 5322 message, CRLF line ends
}

// header is one header field to write.
type header struct {
	name, value string
	// structured values (address lists) are folded after commas only; unstructured
	// ones (Subject) may be RFC 2047 encoded.
	addresses []*mail.Address
}

// buildMessage assembles the message. The header values must have passed
// checkHeaderValue; the body may hold any UTF-8 text.
func buildMessage(hs []header, body string) ([]byte, error) {
	var b bytes.Buffer
	b.Grow(len(body) + 512)
	for _, h := range hs {
		var err error
		if h.addresses != nil {
			err = writeAddressHeader(&b, h.name, h.addresses)
		} else {
			err = writeTextHeader(&b, h.name, h.value)
		}
		if err != nil {
			return nil, err
		}
	}
	b.WriteString("MIME-Version: 1.0\r\n")
	b.WriteString("Content-Type: text/plain; charset=utf-8\r\n")
	body = crlf(body)
	if needsEncoding(body) {
		b.WriteString("Content-Transfer-Encoding: quoted-printable\r\n\r\n")
		w := quotedprintable.NewWriter(&b)
		w.Write([]byte(body))
		w.Close()
	} else {
		b.WriteString("Content-Transfer-Encoding: 7bit\r\n\r\n")
		b.WriteString(body)
	}
	if !bytes.HasSuffix(b.Bytes(), []byte("\r\n")) {
		b.WriteString("\r\n")
	}
	return b.Bytes(), nil
}

// writeTextHeader writes an unstructured header: non-ASCII text as RFC 2047
// encoded-words, folded at spaces to keep lines near 78 characters.
func writeTextHeader(b *bytes.Buffer, name, value string) error {
	if !isASCII(value) {
		value = mime.QEncoding.Encode("utf-8", value)
	}
	return fold(b, name, strings.Split(value, " "), " ")
}

// writeAddressHeader writes an address list, folding after commas.
func writeAddressHeader(b *bytes.Buffer, name string, list []*mail.Address) error {
	parts := make([]string, len(list))
	for i, a := range list {
		parts[i] = a.String()
	}
	return fold(b, name, parts, ", ")
}

// fold writes "name: " and the words joined by sep, starting a new line (CRLF and a
// space) before a word that would pass foldAt. A line longer than maxLineLen is an
// error.
func fold(b *bytes.Buffer, name string, words []string, sep string) error {
	b.WriteString(name)
	b.WriteByte(':')
	line := len(name) + 1
	punct := strings.TrimRight(sep, " ") // "," between addresses, nothing between words
	for i, w := range words {
		if i > 0 {
			b.WriteString(punct)
			line += len(punct)
		}
		// Fold before w when it would pass foldAt and a new line helps (also right
		// after the colon: "Subject:" CRLF " =?utf-8?q?...?=" is valid).
		if line+1+len(w) > foldAt && line > 0 && 1+len(w) <= foldAt || i > 0 && line+1+len(w) > maxLineLen {
			b.WriteString("\r\n")
			line = 0
		}
		b.WriteByte(' ')
		b.WriteString(w)
		line += 1 + len(w)
		if line > maxLineLen {
			return errors.New("header line longer than 998 characters")
		}
	}
	b.WriteString("\r\n")
	return nil
}

// crlf normalises line ends to CRLF.
func crlf(s string) string {
	if !strings.ContainsAny(s, "\r\n") {
		return s
	}
	s = strings.ReplaceAll(s, "\r\n", "\n")
	s = strings.ReplaceAll(s, "\r", "\n")
	return strings.ReplaceAll(s, "\n", "\r\n")
}

// needsEncoding reports whether body (CRLF line ends) cannot be sent as 7bit: a
// non-ASCII byte, a control character, or a line over maxLineLen.
func needsEncoding(body string) bool {
	line := 0
	for i := 0; i < len(body); i++ {
		c := body[i]
		switch {
		case c == '\r' && i+1 < len(body) && body[i+1] == '\n':
			i++
			line = 0
			continue
		case c >= 0x80, c == 0, c == '\r', c < 0x20 && c != '\t', c == 0x7f:
			return true
		}
		line++
		if line > maxLineLen {
			return true
		}
	}
	return false
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// messageID returns the Message-ID for an event id ("0/16B3748:3") and action id:
// "<0.16B3748.3.orders.mail@fraiseql-observers>", stable across retries.
func messageID(eventID, actionID string) string {
	id := atom(eventID)
	if a := atom(actionID); a != "" {
		id += "." + a
	}
	return "<" + id + "@" + idDomain + ">"
}

// atom maps s to RFC 5322 dot-atom-text: characters outside letters, digits and
// "-_+=" become dots, runs of dots collapse, and no dot leads or trails.
func atom(s string) string {
	var b strings.Builder
	dot := true // suppress a leading dot
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_', c == '+', c == '=':
			b.WriteByte(c)
			dot = false
		default:
			if !dot {
				b.WriteByte('.')
				dot = true
			}
		}
	}
	return strings.TrimSuffix(b.String(), ".")
}

// dateHeader formats t as RFC 5322 requires.
func dateHeader(t time.Time) string { return t.Format(time.RFC1123Z) }
