package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	svc "github.com/fraiseql/fraiseql-observers/service"
	"github.com/fraiseql/fraiseql-observers/transport"
)

// sampleInflight returns the highest observer_inflight_bytes any of procs
// reported on /metrics until ctx ends. With a reader, it sets *published to the
// time from start until the reader's observer_transport_published_total reached
// events (the time is set before ctx ends: the executors cannot deliver what the
// stream does not hold).
func sampleInflight(ctx context.Context, procs []*benchProc, reader *benchProc, events int, start time.Time, published *time.Duration) int64 {
	var peak int64
	for {
		if reader != nil && *published == 0 {
			if v, err := metricValue(reader.admin, "observer_transport_published_total"); err == nil && v >= float64(events) {
				*published = time.Since(start)
			}
		}
		for _, p := range procs {
			if v, err := metricValue(p.admin, "observer_inflight_bytes"); err == nil {
				peak = max(peak, int64(v))
			}
		}
		select {
		case <-ctx.Done():
			return peak
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// metricValue reads one unlabelled series from an instance's /metrics.
func metricValue(addr, name string) (float64, error) {
	samples, err := scrape(addr)
	if err != nil {
		return 0, err
	}
	for _, s := range samples {
		if s.Name == name && len(s.Labels) == 0 {
			return s.Value, nil
		}
	}
	return 0, fmt.Errorf("%s: no %s", addr, name)
}

// waitAssigned waits until n executors are live and own every partition as
// rendezvous hashing assigns them (transport.Assignment), as the first executor's
// /status shows.
func waitAssigned(ctx context.Context, procs []*benchProc, n int) error {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if err := failed(procs); err != nil {
			return err
		}
		if ts, err := transportStatus(procs[0].admin); err == nil && settled(ts, n) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d executors did not settle on the partitions within 2 minutes", n)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func settled(ts *svc.TransportDoc, n int) bool {
	if len(ts.Executors) != n || len(ts.Partitions) == 0 {
		return false
	}
	want := transport.Assignment(ts.Executors, len(ts.Partitions))
	for _, p := range ts.Partitions {
		if p.Partition < 0 || p.Partition >= len(want) || p.Owner == "" || p.Owner != want[p.Partition] {
			return false
		}
	}
	return true
}

// transportStatus reads the transport part of an instance's /status.
func transportStatus(addr string) (*svc.TransportDoc, error) {
	resp, err := http.Get("http://" + addr + "/status")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var doc svc.StatusDoc
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		return nil, err
	}
	if doc.Transport == nil {
		return nil, fmt.Errorf("no transport in the status of %s", addr)
	}
	return doc.Transport, nil
}
