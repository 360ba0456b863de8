package checkpoint

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fraiseql/fraiseql-observers/internal/pgschema"
	"github.com/fraiseql/fraiseql-observers/lsn"
)

// PartitionsTable holds, per partition of a nats transport stream, the position up
// to which the executors settled every event of the partition (transport.Positions).
const PartitionsTable = "observer_transport_partitions"

// Partitions reads and writes the settled positions of the partitions of one
// transport stream, beside the checkpoints. A position only rises: a write below
// the stored one (an executor that lost the partition, writing late) changes
// nothing. It is safe for concurrent use.
type Partitions struct {
	pool   *pgxpool.Pool
	schema string
	stream string
}

// NewPartitions returns the store of the partitions of stream, in schema.
func NewPartitions(pool *pgxpool.Pool, schema, stream string) *Partitions {
	if schema == "" {
		schema = "public"
	}
	return &Partitions{pool: pool, schema: schema, stream: stream}
}

func (s *Partitions) table() string { return pgx.Identifier{s.schema, PartitionsTable}.Sanitize() }

// Migrate creates the table when it does not exist.
func (s *Partitions) Migrate(ctx context.Context) error {
	sql := fmt.Sprintf(`
CREATE TABLE IF NOT EXISTS %s (
	stream      text        NOT NULL,
	partition   int         NOT NULL,
	commit_lsn  pg_lsn      NOT NULL,
	ordinal     bigint      NOT NULL,
	updated_at  timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (stream, partition)
)`, s.table())
	if err := pgschema.Ensure(ctx, s.pool, s.schema, []string{PartitionsTable}, sql); err != nil {
		return fmt.Errorf("create the transport partitions table: %w", err)
	}
	return nil
}

// Load returns the stored positions of the given partitions; a partition without
// one is absent from the map.
func (s *Partitions) Load(ctx context.Context, partitions []int) (map[int]lsn.Position, error) {
	rows, err := s.pool.Query(ctx, fmt.Sprintf(`SELECT partition, commit_lsn::text, ordinal FROM %s WHERE stream = $1 AND partition = ANY($2)`,
		s.table()), s.stream, partitions)
	if err != nil {
		return nil, fmt.Errorf("load the positions of the transport partitions: %w", err)
	}
	defer rows.Close()
	out := map[int]lsn.Position{}
	for rows.Next() {
		var p int
		var l string
		var ord int64
		if err := rows.Scan(&p, &l, &ord); err != nil {
			return nil, fmt.Errorf("load the positions of the transport partitions: %w", err)
		}
		pos, err := lsn.Parse(l)
		if err != nil {
			return nil, fmt.Errorf("load the positions of the transport partitions: %w", err)
		}
		out[p] = lsn.Position{Commit: pos, Ord: uint32(ord)}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load the positions of the transport partitions: %w", err)
	}
	return out, nil
}

// Save raises the stored positions of the partitions in positions, in one
// transaction; a stored position is never lowered.
func (s *Partitions) Save(ctx context.Context, positions map[int]lsn.Position) error {
	if len(positions) == 0 {
		return nil
	}
	b := &pgx.Batch{}
	b.Queue(`SELECT set_config('lock_timeout', $1, true)`, lockTimeout)
	q := fmt.Sprintf(`
INSERT INTO %s AS t (stream, partition, commit_lsn, ordinal) VALUES ($1, $2, $3::pg_lsn, $4)
ON CONFLICT (stream, partition) DO UPDATE SET commit_lsn = EXCLUDED.commit_lsn, ordinal = EXCLUDED.ordinal, updated_at = now()
WHERE (t.commit_lsn, t.ordinal) < (EXCLUDED.commit_lsn, EXCLUDED.ordinal)`, s.table())
	for p, pos := range positions {
		b.Queue(q, s.stream, p, pos.Commit.String(), int64(pos.Ord))
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error { return tx.SendBatch(ctx, b).Close() })
	if err != nil {
		return fmt.Errorf("save the positions of the transport partitions: %w", err)
	}
	return nil
}
