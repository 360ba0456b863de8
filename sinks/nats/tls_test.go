package nats

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observers/internal/sinktest"
)

// writeCerts writes a test CA (ca.pem) and a server certificate for 127.0.0.1 signed
// by it (server.pem, server-key.pem) into dir.
func writeCerts(t *testing.T, dir string) {
	t.Helper()
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	write := func(name, typ string, der []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	caKey, srvKey := key(), key()
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	srv := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	srvDER, err := x509.CreateCertificate(rand.Reader, srv, ca, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(srvKey)
	if err != nil {
		t.Fatal(err)
	}
	write("ca.pem", "CERTIFICATE", caDER)
	write("server.pem", "CERTIFICATE", srvDER)
	write("server-key.pem", "EC PRIVATE KEY", keyDER)
}

// TestTLS: a tls:// URL verifies the server's certificate: with the test CA as
// ca_file the sink publishes; with the system roots it cannot connect.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	writeCerts(t, dir)
	port := sinktest.FreePort(t)
	conf := fmt.Sprintf("listen: 127.0.0.1:%d\njetstream { store_dir: %q }\ntls { cert_file: %q, key_file: %q }\n",
		port, filepath.Join(dir, "js"), filepath.Join(dir, "server.pem"), filepath.Join(dir, "server-key.pem"))
	path := filepath.Join(dir, "nats.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	sinktest.StartProcess(t, fmt.Sprintf("127.0.0.1:%d", port), "nats-server", "-c", path)
	url := fmt.Sprintf("tls://127.0.0.1:%d", port)

	if _, err := Open(ctxT(t), Config{URL: url, Subject: "cdc.orders"}, Options{}); err == nil ||
		!strings.Contains(err.Error(), "certificate") {
		t.Fatalf("unexpected error without the CA; got %v", err)
	}
	s := openSink(t, Config{URL: url, Subject: "cdc.orders", CAFile: filepath.Join(dir, "ca.pem")}, nil)
	st := createStream(t, s.js)
	evs := sinktest.Events(10, 10)
	noDLQ(t, sinktest.Run(t, noClose{s}, evs, sinktest.RunOptions{BatchSize: 5}))
	checkStored(t, readAll(t, st), evs, "cdc.orders")
}
