// Package snapshot backfills tables: it reads the rows a table already holds and
// hands them on as events of op READ, while the replication stream goes on, without
// pausing the stream and with no lock but the ACCESS SHARE lock any SELECT takes (the
// watermark algorithm of Netflix's DBLog, also Debezium's incremental snapshot).
//
// # Chunks between watermarks
//
// A table is read in key order, in chunks of Options.ChunkSize rows (keyset
// pagination on the replica identity key: the primary key or the REPLICA IDENTITY
// index, else a unique index over NOT NULL columns; a table without one is refused,
// ctid is never used). Each chunk is read in its own repeatable-read, read-only
// transaction and bracketed by two logical decoding messages with Prefix written
// through the WAL: a low watermark committed before the read's snapshot is taken, a
// high watermark committed after the read. The replication session hands every event
// to the Manager first (cdc.Interceptor); on the session's goroutine, in stream order:
//
//   - the changes of the table between the two watermarks are noted (the window), and
//     so are, with their transaction ids, the changes since the previous chunk;
//   - at the high watermark, every row of the chunk whose key the window holds, or
//     that a transaction changed which the read's snapshot does not see, is dropped:
//     the stream has delivered (or is about to deliver) a newer image of it. The other
//     rows are handed on right there, at the high watermark's place in the stream.
//
// Every change the stream delivers before the high watermark is thus either older
// than what the read saw, or has its row dropped; every change after it committed
// after the read. No READ row ever overwrites a newer change, and the events of each
// row stay in commit order: for every key, the last event delivered is the row as the
// table holds it (or the DELETE of a row that is gone). The transaction-id check goes
// beyond DBLog's window: it also covers a transaction whose commit reached the WAL
// before the low watermark but was not yet visible to the read (a commit waiting for a
// synchronous standby, say), provided its commit is decoded after the snapshot of the
// table started (the watch starts before the first chunk's low watermark is written).
// A TRUNCATE of the table in a chunk's window (or unseen by its read) drops the whole
// chunk; a change whose key cannot be read from its images makes the chunk be read
// again. Each chunk is read under ACCESS SHARE (the lock any SELECT takes, held until
// the chunk is read) after checking the table's definition, which is checked again
// after the high watermark: an ALTER TABLE starts the snapshot again after its last
// completed chunk, with the table described anew. ACCESS SHARE conflicts only with
// ACCESS EXCLUSIVE (DROP, TRUNCATE, most ALTER TABLE, VACUUM FULL, CLUSTER, REINDEX):
// such a command waits for the chunk's read to end; a chunk that waits for one more
// than 10 s (lock_timeout) fails and the snapshot resumes from its last completed
// chunk after a backoff.
//
// The READ rows of a chunk are dispatched in the session's watermark at the high
// watermark's position: the slot is never confirmed past it until every one of them
// is settled, as for streamed changes.
//
// # Event ids
//
// A READ event's id is {base, n}: n is the row's place in its chunk (from 1), base the
// LSN just before the chunk's first low watermark. WAL records start and end on
// 8-byte boundaries, so no transaction commits and no message sits at base: a
// snapshot id never equals a streamed one, and the pipeline never skips a READ event
// because of a checkpoint (docs/events.md). The base is recorded with a hash of the
// chunk's keys (observer_snapshot_chunks) before the chunk's events are handed on: a
// chunk read again after a crash, holding the same keys, gets the same ids; one whose
// rows changed meanwhile gets a new base, so an id never names two rows.
//
// # Durable, resumable, bounded
//
// Progress (the key of the last row of the last completed chunk: every event of it and
// of the chunks before settled) is stored in observer_snapshots, next to the
// checkpoints and fenced by the same epoch. A restart, a failover or a SIGKILL resumes
// each unfinished snapshot after its last completed chunk; the chunks in flight at the
// time are read again. At most four chunks are in flight, a chunk ends early once its
// events hold an eighth of the pipeline's byte budget (the budget when the snapshot was
// requested, stored with it like the chunk size: a chunk read again after a restart
// with another budget ends where it ended, so its rows keep their ids), a chunk is read
// only while the pipeline holds less than half of the current budget, and
// Options.RowsPerSecond limits the reading, so live changes keep flowing between
// chunks. The history holds the keys of the table's changes since the previous chunk
// that the oldest pending chunk's read did not see: a few transactions, not the
// stream's backlog.
//
// # --where
//
// A Request's Where is one SQL boolean expression over the table's columns. It is
// refused unless (1) read with PostgreSQL's lexical rules (standard_conforming_strings
// on, which every connection that runs it sets), it has no semicolon outside literals,
// no comment, no parameter, and parentheses that balance without closing one it did
// not open — so it cannot end the parenthesised expression it is put in; (2) the
// server parses and analyses SELECT (expr) FROM the table as one prepared statement
// (the extended protocol refuses a second statement), with no parameter and one
// boolean column. It only ever runs inside read-only transactions, so it cannot write
// to a table or a sequence. What is not prevented: functions PostgreSQL allows in a
// read-only transaction run with the service role's privileges (pg_sleep, pg_notify,
// advisory locks, pg_logical_emit_message, pg_terminate_backend where the role may,
// a subquery reading another table the role can read). The admin endpoint is an
// operator interface protected by its token; give the service role no privilege it
// does not need.
package snapshot
