package sinktest

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// JetStreamCluster is a three-node JetStream cluster on loopback, started for one
// test and killed when it ends.
type JetStreamCluster struct {
	// Nodes are the servers; node i is named "n<i>" (its server_name, as JetStream's
	// cluster info names stream and consumer leaders).
	Nodes []*Process
	// URL names every node, comma-separated, as NATS clients take a server list.
	URL string
}

// StartJetStreamCluster starts three nats-server processes with JetStream, each
// on its own free loopback client and route ports and with its own store
// directory (kept across a node's Restart), routed to one another. It returns once
// the cluster can place a three-replica stream: a meta leader is elected and knows
// every peer (a fresh cluster refuses R3 streams until then).
func StartJetStreamCluster(t testing.TB) *JetStreamCluster {
	t.Helper()
	free := freePorts(t, 6)
	ports, routePorts := free[:3], free[3:]
	var routes []string
	for _, p := range routePorts {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", p))
	}
	c := &JetStreamCluster{}
	var urls []string
	dir := t.TempDir()
	for i := range ports {
		conf := fmt.Sprintf("server_name: n%d\nlisten: 127.0.0.1:%d\njetstream { store_dir: %q }\ncluster {\n  name: c\n  listen: 127.0.0.1:%d\n  routes: [%s]\n}\n",
			i, ports[i], filepath.Join(dir, fmt.Sprintf("js%d", i)), routePorts[i], strings.Join(routes, ", "))
		path := filepath.Join(dir, fmt.Sprintf("n%d.conf", i))
		if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		addr := fmt.Sprintf("127.0.0.1:%d", ports[i])
		c.Nodes = append(c.Nodes, StartProcess(t, addr, "nats-server", "-c", path))
		urls = append(urls, "nats://"+addr)
	}
	c.URL = strings.Join(urls, ",")
	c.waitR3(t)
	return c
}

// freePorts returns n distinct free loopback ports: all are held open until every
// one is chosen (FreePort, called n times, may return one port twice).
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var out []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	return out
}

// Node returns the node named name ("n0", "n1" or "n2"), or nil.
func (c *JetStreamCluster) Node(name string) *Process {
	for i, n := range c.Nodes {
		if name == fmt.Sprintf("n%d", i) {
			return n
		}
	}
	return nil
}

// waitR3 creates and deletes a three-replica probe stream, retrying for up to a
// minute while the cluster elects its meta leader and learns its peers.
func (c *JetStreamCluster) waitR3(t testing.TB) {
	t.Helper()
	nc, err := nats.Connect(c.URL, nats.RetryOnFailedConnect(true))
	if err != nil {
		t.Fatalf("connect to the JetStream cluster: %v", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg := jetstream.StreamConfig{Name: "sinktest_probe", Subjects: []string{"sinktest.probe"}, Replicas: 3, Storage: jetstream.MemoryStorage}
	for {
		cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := js.CreateStream(cctx, cfg)
		if err == nil {
			err = js.DeleteStream(cctx, cfg.Name)
		}
		ccancel()
		if err == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the JetStream cluster could not place a three-replica stream within a minute: %v", err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
