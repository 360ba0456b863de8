package transport

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Ownership lives in the KV bucket <stream>_owners (history 1, TTL lease_ttl):
//
//	members.<executor id>   written by each executor every lease_ttl/3 (its heartbeat)
//	owner.<partition>       the executor owning the partition, created with Create
//	                        (only if absent), renewed with Update at the revision the
//	                        owner holds, released with Delete at that revision
//
// The TTL makes the key of an executor that stopped renewing (dead, partitioned
// away, paused) disappear after lease_ttl, so another may Create it; the revision
// makes every renewal and release a compare-and-set, so an ex-owner cannot renew or
// release a partition someone else owns now. Which executor should own a partition
// is rendezvous hashing over the live members: every executor computes the same
// answer from the same member list, and a join or leave moves only the partitions
// of that member.

const (
	membersPrefix = "members."
	ownerPrefix   = "owner."
)

func ownerKey(p int) string { return ownerPrefix + strconv.Itoa(p) }

// claim is one partition held by this executor.
type claim struct {
	epoch uint64    // revision at Create: names the ownership
	rev   uint64    // revision of the last renewal: the compare-and-set value
	until time.Time // the lease is known to be ours before this (monotonic)
}

// desired returns the partitions (of n) that Assignment gives to id among members.
func desired(id string, members []string, n int) map[int]bool {
	out := map[int]bool{}
	for p, m := range Assignment(members, n) {
		if m == id {
			out[p] = true
		}
	}
	return out
}

// Assignment returns, for each of n partitions, the executor that should own it
// among members: where ownership settles once every member has seen the same member
// list. It is rendezvous hashing with bounded load: every (partition, member) pair
// has a score, and going through the pairs from the highest score down, a partition
// goes to the member of the pair unless that member already holds its share, so
// that each member holds n/len(members) partitions, rounded down or up (plain
// rendezvous hashing split 16 partitions 8/2/6 over three executors, and 8 over
// three left one idle about one time in nine). Every member computes the same answer
// from the same set of members, in any order. A join or a leave moves mostly the
// partitions of that member, and a few more to keep the shares even.
func Assignment(members []string, n int) []string {
	out := make([]string, n)
	ms := slices.Clone(members)
	slices.Sort(ms)
	ms = slices.Compact(ms)
	if len(ms) == 0 || n <= 0 {
		return out
	}
	type pair struct {
		score uint64
		m, p  int
	}
	pairs := make([]pair, 0, n*len(ms))
	for i, m := range ms {
		h := fnv.New64a()
		h.Write([]byte(m))
		hm := h.Sum64()
		for p := range n {
			pairs = append(pairs, pair{mix64(hm ^ mix64(uint64(p)+1)), i, p})
		}
	}
	sort.Slice(pairs, func(a, b int) bool {
		x, y := pairs[a], pairs[b]
		if x.score != y.score {
			return x.score > y.score
		}
		if x.m != y.m {
			return x.m < y.m
		}
		return x.p < y.p
	})
	// Each member holds base partitions, and extra of them one more.
	base, extra := n/len(ms), n%len(ms)
	held := make([]int, len(ms))
	left := n
	for _, pr := range pairs {
		if left == 0 {
			break
		}
		if out[pr.p] != "" {
			continue
		}
		switch {
		case held[pr.m] < base:
		case held[pr.m] == base && extra > 0:
			extra--
		default:
			continue
		}
		held[pr.m]++
		out[pr.p] = ms[pr.m]
		left--
	}
	return out
}

// mix64 is the splitmix64 finalizer: FNV of short, similar ids ("e1", "e2") is
// too regular for rendezvous hashing on its own.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

// members lists the live executors, sorted: the members.* subjects that hold a
// message in the bucket's stream st, read from the stream's state (one request to
// the stream's leader). The bucket's Keys would create a consumer on every call,
// which after a NATS node loss often goes unanswered for seconds; a member that
// leaves purges its key (leave), so no delete marker stays behind.
func members(ctx context.Context, st jetstream.Stream, bucket string) ([]string, error) {
	prefix := "$KV." + bucket + "." + membersPrefix
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(prefix+">"))
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(info.State.Subjects))
	for subject, n := range info.State.Subjects {
		if m, ok := strings.CutPrefix(subject, prefix); ok && n > 0 {
			out = append(out, m)
		}
	}
	sort.Strings(out)
	return out, nil
}

// leave removes executor id from the members: its key is purged from the bucket's
// stream st, leaving no delete marker that members would count.
func leave(ctx context.Context, st jetstream.Stream, bucket, id string) error {
	return st.Purge(ctx, jetstream.WithPurgeSubject("$KV."+bucket+"."+membersPrefix+id))
}

// ownersStream returns the stream under the ownership bucket.
func (c *Client) ownersStream(ctx context.Context) (jetstream.Stream, error) {
	st, err := c.js.Stream(ctx, "KV_"+c.OwnersBucket())
	if err != nil {
		return nil, fmt.Errorf("ownership bucket %q: %w", c.OwnersBucket(), err)
	}
	return st, nil
}

// Ownership is one partition's owner as the bucket holds it.
type Ownership struct {
	Partition int
	Owner     string // "" when nobody owns it
	Revision  uint64
}

// Owners returns the owner of every partition and the live executors, as the
// ownership bucket holds them, for status and validate-config.
func (c *Client) Owners(ctx context.Context) ([]Ownership, []string, error) {
	ctx, cancel := c.timeout(ctx)
	defer cancel()
	kv, err := c.js.KeyValue(ctx, c.OwnersBucket())
	if err != nil {
		return nil, nil, err
	}
	st, err := c.ownersStream(ctx)
	if err != nil {
		return nil, nil, err
	}
	ms, err := members(ctx, st, c.OwnersBucket())
	if err != nil {
		return nil, nil, err
	}
	out := make([]Ownership, c.cfg.Partitions)
	for p := range out {
		out[p].Partition = p
		e, err := kv.Get(ctx, ownerKey(p))
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		out[p].Owner, out[p].Revision = string(e.Value()), e.Revision()
	}
	return out, ms, nil
}

// Backlog is one partition's transport backlog: messages stored and not yet
// delivered to its consumer (Pending), and delivered but not acknowledged
// (AckPending). A partition no executor has served yet has no consumer: all its
// stored messages are Pending.
type Backlog struct {
	Partition  int
	Consumer   string
	Pending    uint64
	AckPending int
}

// Backlogs returns the backlog of every partition that has a consumer or holds
// messages, by partition. The stream's message count per subject (work-queue
// retention: the messages not acknowledged) covers the partitions without a
// consumer.
func (c *Client) Backlogs(ctx context.Context) ([]Backlog, error) {
	ctx, cancel := c.timeout(ctx)
	defer cancel()
	st, err := c.js.Stream(ctx, c.cfg.Stream)
	if err != nil {
		return nil, err
	}
	byPartition := map[int]*Backlog{}
	l := st.ListConsumers(ctx)
	for info := range l.Info() {
		p, ok := c.partitionOf(info.Config.FilterSubject)
		if !ok {
			continue
		}
		byPartition[p] = &Backlog{Partition: p, Consumer: info.Name, Pending: info.NumPending, AckPending: info.NumAckPending}
	}
	if err := l.Err(); err != nil {
		return nil, err
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(c.cfg.SubjectPrefix+".*"))
	if err != nil {
		return nil, err
	}
	for subject, n := range info.State.Subjects {
		p, ok := c.partitionOf(subject)
		if !ok || byPartition[p] != nil || n == 0 {
			continue
		}
		byPartition[p] = &Backlog{Partition: p, Pending: n}
	}
	out := make([]Backlog, 0, len(byPartition))
	for _, b := range byPartition {
		out = append(out, *b)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Partition < out[j].Partition })
	return out, nil
}

func (c *Client) partitionOf(subject string) (int, bool) {
	s, ok := strings.CutPrefix(subject, c.cfg.SubjectPrefix+".")
	if !ok {
		return 0, false
	}
	p, err := strconv.Atoi(s)
	return p, err == nil && p >= 0 && p < c.cfg.Partitions
}
