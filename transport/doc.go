// Package transport puts a NATS JetStream stream between the process that reads the
// replication slot and any number of executor processes that run the actions
// (transport.type: nats; in_process, the default, keeps both in one process).
//
//	slot ──cdc.Session──▶ Publisher ──<prefix>.<partition>──▶ stream (work queue)
//	  ▲                      │ PubAck                              │ one durable consumer
//	  └── confirm ◀── watermark                                    ▼ per owned partition
//	                                  Executor ──Generation──▶ pipeline ──▶ sinks
//	                                     ▲ owner.<p>, members.<id>          │ settled
//	                                     └──── KV bucket <stream>_owners    └──▶ Ack
//
// Everything distributed is JetStream's: it stores and replicates the events (the
// stream, R1 or R3), drops re-published events (Nats-Msg-Id = event id, within the
// duplicate window), keeps them in order per partition and remembers what each
// partition's reader acknowledged (durable consumers on a work-queue stream, which
// deletes a message once it is acknowledged), and decides who owns a partition (a
// KV bucket: revisions for compare-and-set, the bucket TTL for leases).
//
// # Reader
//
// Publisher takes the place of the pipeline behind the replication session. An
// event goes to <prefix>.<partition>, the partition a stable hash of table and
// replica identity key (Partition), so a row's changes share a partition. Publishes
// are asynchronous, at most max_pending outstanding; the session stops reading while
// the window is full or NATS is away (status updates go on). An event's ticket is
// acknowledged to the session's watermark only on its PubAck, so the slot is never
// confirmed past an event the stream does not hold. Every publish carries
// Nats-Expected-Last-Msg-Id (its predecessor's id) except the first after a start or
// a failure, so JetStream refuses to store an event after a gap: the stream holds
// the events in commit order, whatever fails in between. A snapshot's READ rows
// (package snapshot) reach the publisher the same way, at their high watermark's
// place in the stream, so they are published in order with their rows' changes; a
// row read for one observer carries its name in ObserverHeader.
// An event the session sends again within one process (a reconnect, a rewind) is
// not published again: the publisher holds it already, published or queued, and
// acknowledges the new ticket at once.
//
// # Replay
//
// A replay (Publisher.Replay, before the session rewinds) publishes the events of
// its range again when the session sends them again, as new messages: the event
// keeps its id, Nats-Msg-Id becomes ReplayMsgID (<id>:replay:<n>, n the replay's
// number), so that the duplicate window does not drop it, and the headers
// Fraiseql-Replay (n) and Fraiseql-Replay-Observer (the observer, when the replay
// is for one) mark it. Replayed events take their place in the
// Nats-Expected-Last-Msg-Id chain like any other, in commit order. An executor
// hands a replayed event to its pipeline with PushReplayed: delivered again
// whatever was settled before, by the named observer's actions only.
//
// # Executors
//
// Ownership uses a KV bucket rather than consumer primitives because JetStream 2.9
// has no way to give a consumer exclusively to one client (pull consumers serve any
// number of clients; "priority groups" and pinned clients came in 2.11), while a KV
// key gives exactly the lease needed: Create succeeds only when nobody holds the
// key, Update and Delete only at the revision the holder last saw, and the bucket TTL
// removes the key of a holder that stopped renewing. Rendezvous hashing with
// bounded load over the live members (members.<id>, renewed with the leases; see
// Assignment) tells each executor which partitions it should hold, an even share
// each; an executor releases a partition another should hold
// (after settling what it has of it, while its lease lasts) and claims those free
// that it should hold. A dead executor's partitions move once its leases lapse
// (lease_ttl, checked every lease_ttl/3); a join or a graceful leave moves
// partitions within lease_ttl/3 of the next renewal. The live members are read
// from the bucket stream's per-subject state (one request to its leader) rather
// than with the bucket's Keys, which creates a consumer per call; a leaving
// executor purges its key so that no delete marker counts as a member.
//
// A renewal that times out does not give the partition up: it is tried again
// at the next tick while the lease's deadline fences the generation, and a
// renewal or claim whose answer was lost but which the bucket stored is taken up
// (the key names this executor, and only this executor writes its id; executor
// ids must therefore be unique among running executors). A partition is given up
// only when the bucket says another executor holds it, or nobody. lease_ttl must
// exceed the time NATS needs to elect new leaders after a node loss (2 to 7 s
// measured here with nats-server 2.9 on a loaded machine): with a shorter one,
// every lease lapses then and the partitions are claimed again, which is safe but
// pauses delivery.
//
// The owned partitions are served by a Generation: for each partition it deletes
// any previous consumer of the partition and creates its own durable consumer,
// which starts at the partition's first unacknowledged message, so a partition that
// moves resumes exactly where the last acknowledgement left it, in order. The
// previous consumers are found by name (CONSUMER.NAMES, answered by the meta
// leader from its assignments), not with CONSUMER.LIST, which waits for every
// consumer's leader and times out while any of them is being elected. Each call
// is retried under the same consumer name while the partitions stay claimed (a
// new R3 consumer whose preferred leader is a dead node answers only after an
// election), and a generation that failed to start is tried again under the same
// number, so that its consumers are taken up rather than made again. Pull
// requests expire after the transport timeout, so a pull parked on a consumer
// leader that died is made again to the new leader within that time. A
// message delivered to a pull but lost in transit (its connection dropped)
// counts as delivered, and JetStream sends it again only after ack_wait, behind
// the messages that follow it: the fetcher checks that the consumer's delivery
// sequence has no gap, and on one the generation fails and its successor reads
// the partition from its first unacknowledged message, in order. Events
// go through the same pipeline as in-process (conditions, per-row queues, retries,
// DLQ); a message is acknowledged only when the pipeline settled its event for
// every matching action.
//
// # Row cache and deduplication
//
// Two stages of the in-process pipeline move out of the executors' pipelines,
// which interleave partitions and see a row only while they own its partition.
// The row cache moves to the reader, which sees every event in commit order: the
// Publisher fills each event (pipeline.Filler: unchanged TOAST columns, the cached
// old image, changed columns) before publishing it, so executors receive complete
// events whichever executor served the row before.
//
// Deduplication moves to the Generation, per partition: a partition is in commit
// order, so the position up to which every event of it was settled (its settled
// position, advanced as messages are acknowledged) tells repeats apart — a message
// JetStream delivers again after its acknowledgement was lost or its executor died
// or lost its lease after settling it, or an event the reader re-published after
// the duplicate window. A message at or below it is acknowledged and not
// delivered; one carrying ReplayHeader is delivered regardless. The position lives
// in PostgreSQL beside the checkpoints (Positions; the service's is
// checkpoint.Partitions), saved periodically and when a generation stops, loaded
// when a generation starts, so it follows a partition to its next executor. Not
// in the KV bucket: the ownership bucket's TTL is the lease, so it keeps nothing
// durable, and a second bucket would add a replicated write per save while every
// executor already writes to PostgreSQL (the DLQ); there a late save from an
// executor that lost the partition cannot lower the position (it only rises) and
// is true (what it saves it settled). The position is per partition rather than
// per (partition, action): an event one action settled while another had not when
// the executor died is delivered again to the first, with the same event id, as
// after a crash in-process (the in-flight window).
//
// Fencing: a Generation may deliver or acknowledge only before the deadline of its
// last renewal (taken on the monotonic clock before the renewal was sent, less a
// fifth of the TTL), so an executor that was paused longer than its lease finds its
// right lapsed when it resumes and neither starts a delivery nor acknowledges; the
// new owner deleting its consumer also voids any acknowledgement sent on it. A
// delivery already in flight when the process was paused is not recalled (no
// transport can), so receivers see at-least-once delivery with stable event ids.
package transport
