package broker

import (
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"time"

	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"
)

// The Postgres broker's work queue: a watermill-sql SchemaAdapter and
// OffsetsAdapter (pgQueue is both) over four tables per topic.
//
//	watermill_<topic>             messages published while the topic has no
//	                              consumer group yet (the table of the former
//	                              offset schema, kept as is); the first group
//	                              to subscribe takes them over.
//	watermill_groups_<topic>      the topic's consumer groups.
//	watermill_queue_<topic>       one row per message and consumer group not
//	                              yet acked: (consumer_group, offset) with the
//	                              payload, metadata, created_at, visible_after,
//	                              attempts.
//	watermill_deliveries_<topic>  one row per queue row ever handed to a
//	                              handler and not acked yet: (consumer_group,
//	                              offset, deliveries, last_delivered_at,
//	                              visible_after: the crash delay).
//
// A publish inserts one queue row per registered group (fan-out) in the one
// INSERT statement of watermill-sql's publisher. A subscriber's read is
//
//	SELECT ... WHERE consumer_group = $1 AND visible_after <= now()
//	  AND offset NOT IN (the group's deliveries rows whose
//	                    visible_after is still ahead)
//	ORDER BY offset LIMIT 1 FOR UPDATE SKIP LOCKED
//
// in a READ COMMITTED transaction that watermill-sql keeps open until the
// handler acks: the row lock is held for the handler's run, so the other
// subscribers of the group (in this process or any other) skip that message
// and take the next. Nothing depends on the oldest open transaction of the
// server: a committed row is visible to the next read. The ack deletes the
// row (WHERE attempts is still the delivered value) and its deliveries row
// in that transaction; a nack (pgSubscriber) bumps attempts and
// visible_after instead, so the message comes back after a delay and the
// others pass it.
//
// A crash (or a lost connection, or the ack deadline) rolls the read
// transaction back and unlocks the row, which is why the deliveries row
// exists: before the handler gets the message, pgSubscriber counts the
// delivery in a statement of its own on the broker's shared pool
// (deliveryQuery: autocommit, so it survives the crash; on another table,
// so it never waits for the row lock its own read holds), with a
// visible_after of last_delivered_at + backoff(deliveries), the nack's
// backoff (1 s, doubling, at most 1 min), which the read waits for: a
// message that kills its consumer every time comes back ever more slowly,
// the others pass it, and its count (the handler's "deliveries" metadata)
// survives the process. While the reader lives the row is locked and
// skipped anyway, so the delay only matters once the reader is gone. A read
// that never reached the handler (the subscription closing) takes its count
// back (undeliveryQuery). Cost: one small upsert (and its commit) per
// delivery, none per empty poll.
//
// Nack and deliveries together: a nacked row is visible at the later of its
// queue visible_after (nack time + base*2^attempts) and its deliveries
// visible_after (last_delivered_at + base*2^(deliveries-1)). Without crashes deliveries-1 is the attempts the
// nack saw and the delivery precedes the nack, so the nack's delay decides,
// as before; after k crashes the deliveries term is 2^k times longer and
// decides: crashes and nacks back off together, never added up.
//
// A handler may write in the read transaction (wsql.TxFromContext): the
// recorder records its batch there (store/postgres RecordInTx), so the rows
// and the ack commit together, exactly once. A crash, a lost connection or
// the ack deadline before the commit leaves neither.
//
// pgQueue is the SchemaAdapter, pgQueueOffsets the OffsetsAdapter.
type pgQueue struct{}

type pgQueueOffsets struct{}

var (
	_ wsql.SchemaAdapter  = pgQueue{}
	_ wsql.OffsetsAdapter = pgQueueOffsets{}
)

func ident(name string) string { return pgx.Identifier{name}.Sanitize() }

func messagesTable(topic string) string { return ident("watermill_" + topic) }
func groupsTable(topic string) string   { return ident("watermill_groups_" + topic) }
func queueTable(topic string) string    { return ident("watermill_queue_" + topic) }
func deliveriesTable(topic string) string {
	return ident("watermill_deliveries_" + topic)
}

// maxBackoffExponent caps the doubling of the nack and crash delays before
// the max applies (2^16 s is past any max; power() overflows past ~2^1023).
const maxBackoffExponent = 16

// offsetsTable is the per-group offsets table of the former schema
// (DefaultPostgreSQLOffsetsAdapter); its presence means the topic still has
// to be migrated.
func offsetsTable(topic string) string { return ident("watermill_offsets_" + topic) }

// literal quotes s as an SQL string literal (for the DO block, which takes
// no parameters).
func literal(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// pgSchemaLock is the advisory lock under which the topic tables are created
// and migrated, the one watermill-sql's default schema uses.
var pgSchemaLock = wsql.DefaultSchemaInitializationLock("watermill")

// SchemaInitializingQueries creates the topic's tables (those missing: an
// install of a version without the deliveries table gets it on the first
// start) and migrates a topic of the former offset schema (see
// migrateQueries), in one statement (a DO
// block: one transaction, under the advisory lock), so concurrent starts
// neither race on CREATE TABLE nor migrate twice. watermill-sql runs it on a
// subscriber's Subscribe and on the publisher's first publish to a topic.
func (pgQueue) SchemaInitializingQueries(params wsql.SchemaInitializingQueriesParams) ([]wsql.Query, error) {
	t := params.Topic
	q := fmt.Sprintf(`DO $pgq$
BEGIN
	PERFORM pg_advisory_xact_lock(%d);
	CREATE TABLE IF NOT EXISTS %s (
		"offset" BIGSERIAL,
		"uuid" VARCHAR(36) NOT NULL,
		"created_at" TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
		"payload" BYTEA DEFAULT NULL,
		"metadata" JSON DEFAULT NULL,
		"transaction_id" xid8 NOT NULL,
		PRIMARY KEY ("transaction_id", "offset")
	);
	CREATE TABLE IF NOT EXISTS %s (
		consumer_group VARCHAR(255) PRIMARY KEY,
		created_at TIMESTAMPTZ NOT NULL DEFAULT now()
	);
	CREATE TABLE IF NOT EXISTS %s (
		consumer_group VARCHAR(255) NOT NULL,
		"offset" BIGINT NOT NULL,
		uuid VARCHAR(36) NOT NULL,
		payload BYTEA,
		metadata JSON,
		created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
		visible_after TIMESTAMPTZ NOT NULL DEFAULT now(),
		attempts INT NOT NULL DEFAULT 0,
		PRIMARY KEY (consumer_group, "offset")
	) WITH (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000);
	CREATE TABLE IF NOT EXISTS %s (
		consumer_group VARCHAR(255) NOT NULL,
		"offset" BIGINT NOT NULL,
		deliveries INT NOT NULL,
		last_delivered_at TIMESTAMPTZ NOT NULL,
		visible_after TIMESTAMPTZ NOT NULL,
		PRIMARY KEY (consumer_group, "offset")
	) WITH (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000);
	IF to_regclass(%s) IS NOT NULL THEN
%s
	END IF;
END
$pgq$`, pgSchemaLock, messagesTable(t), groupsTable(t), queueTable(t), deliveriesTable(t), literal(offsetsTable(t)), migrateQueries(t))
	return []wsql.Query{{Query: q}}, nil
}

// migrateQueries moves a topic of the former schema (DefaultPostgreSQLSchema
// with DefaultPostgreSQLOffsetsAdapter: every message ever published in
// watermill_<topic>, one (last_processed_transaction_id, offset_acked) row
// per group in watermill_offsets_<topic>) to the queue: every group becomes
// a registered group, every message after its position a queue row of it;
// the messages table is emptied (all of its messages are acked or copied)
// and the offsets table renamed to watermill_offsets_<topic>_migrated, which
// marks the topic as done. Stop every process of the former version first:
// one that still runs reads and writes the former tables only.
func migrateQueries(topic string) string {
	return fmt.Sprintf(`		INSERT INTO %[1]s (consumer_group) SELECT consumer_group FROM %[2]s ON CONFLICT DO NOTHING;
		INSERT INTO %[3]s (consumer_group, "offset", uuid, payload, metadata, created_at)
			SELECT o.consumer_group, m."offset", m.uuid, m.payload, m.metadata, m.created_at
			FROM %[4]s m JOIN %[2]s o
				ON (m.transaction_id, m."offset") > (o.last_processed_transaction_id, o.offset_acked)
			ON CONFLICT DO NOTHING;
		IF EXISTS (SELECT 1 FROM %[2]s) THEN
			TRUNCATE %[4]s;
		END IF;
		ALTER TABLE %[2]s RENAME TO %[5]s;`,
		groupsTable(topic), offsetsTable(topic), queueTable(topic), messagesTable(topic),
		ident("watermill_offsets_"+topic+"_migrated"))
}

// InsertQuery inserts the messages into the queue of every registered group
// of the topic, or, while it has none, into the messages table, in one
// statement (one snapshot of the groups). A group's registration locks the
// messages table against these inserts (BeforeSubscribingQueries), so a
// message published meanwhile is either moved to the new group or inserted
// for it.
func (pgQueue) InsertQuery(params wsql.InsertQueryParams) (wsql.Query, error) {
	t := params.Topic
	values := make([]string, 0, len(params.Msgs))
	args := make([]any, 0, 3*len(params.Msgs))
	for i, msg := range params.Msgs {
		meta := msg.Metadata
		if _, ok := meta[DeliveriesKey]; ok {
			// The count of a delivery, on a message published again (a
			// handler's copy, a replayed dead letter): not the new one's.
			meta = maps.Clone(meta)
			delete(meta, DeliveriesKey)
		}
		metadata, err := json.Marshal(meta)
		if err != nil {
			return wsql.Query{}, fmt.Errorf("metadata of message %s: %w", msg.UUID, err)
		}
		n := 3 * i
		values = append(values, fmt.Sprintf("($%d::varchar, $%d::bytea, $%d::json, %d)", n+1, n+2, n+3, i))
		args = append(args, msg.UUID, []byte(msg.Payload), metadata)
	}
	q := fmt.Sprintf(`WITH m (uuid, payload, metadata, ord) AS (VALUES %s),
	n AS MATERIALIZED (
		SELECT nextval(pg_get_serial_sequence(%s, 'offset')) AS "offset", uuid, payload, metadata
		FROM (SELECT * FROM m ORDER BY ord) ordered
	),
	g AS MATERIALIZED (SELECT consumer_group FROM %s),
	queued AS (
		INSERT INTO %s (consumer_group, "offset", uuid, payload, metadata)
		SELECT g.consumer_group, n."offset", n.uuid, n.payload, n.metadata FROM n CROSS JOIN g
	)
INSERT INTO %s ("offset", uuid, payload, metadata, transaction_id)
SELECT n."offset", n.uuid, n.payload, n.metadata, pg_current_xact_id() FROM n
WHERE NOT EXISTS (SELECT 1 FROM g)`,
		strings.Join(values, ", "), literal(messagesTable(t)), groupsTable(t), queueTable(t), messagesTable(t))
	return wsql.Query{Query: q, Args: args}, nil
}

// SelectQuery takes the group's oldest visible message that no other
// subscriber holds and whose last delivery (if its reader is gone: crashed,
// cut off or past its ack deadline) is older than the backoff of its
// deliveries, and locks it for this read's transaction.
func (pgQueue) SelectQuery(params wsql.SelectQueryParams) (wsql.Query, error) {
	if params.ConsumerGroup == "" {
		return wsql.Query{}, errors.New("the postgres queue needs a consumer group")
	}
	// NOT IN, not NOT EXISTS: a hashed subplan (the rows still in their
	// delay, a few), whatever the tables' statistics; a NOT EXISTS anti-join
	// ran before the sort over every visible row while the queue table had
	// none (a new topic, a burst before autovacuum's analyze).
	return wsql.Query{
		Query: `SELECT q."offset", q.uuid, q.payload, q.metadata, q.attempts FROM ` + queueTable(params.Topic) + ` q
WHERE q.consumer_group = $1 AND q.visible_after <= now()
	AND q."offset" NOT IN (SELECT d."offset" FROM ` + deliveriesTable(params.Topic) + ` d
		WHERE d.consumer_group = $1 AND d.visible_after > now())
ORDER BY q."offset"
LIMIT 1
FOR UPDATE OF q SKIP LOCKED`,
		Args: []any{params.ConsumerGroup},
	}, nil
}

// deliveryQuery counts a delivery of the group's row (autocommit, before the
// handler runs), sets the row's crash delay (visible_after: the nack's
// backoff for this delivery) and returns the count. A normal, flushed
// commit: about 0.14 ms more per delivery on the broker benchmark (0.44
// against 0.30 ms for a delivery and its ack), nothing next to a task's
// handler; committing it asynchronously would have saved most of that, but
// nothing on this broker trades a commit's durability.
func deliveryQuery(topic, consumerGroup string, offset int64, base, max time.Duration) wsql.Query {
	return wsql.Query{
		Query: `INSERT INTO ` + deliveriesTable(topic) + ` AS d (consumer_group, "offset", deliveries, last_delivered_at, visible_after)
SELECT $1::varchar, $2::bigint, 1, now(), now() + make_interval(secs => least($3::float8, $4::float8))
ON CONFLICT (consumer_group, "offset") DO UPDATE SET deliveries = d.deliveries + 1, last_delivered_at = now(),
	visible_after = now() + make_interval(secs => least($3 * power(2, least(d.deliveries, ` + strconv.Itoa(maxBackoffExponent) + `)), $4))
RETURNING deliveries`,
		Args: []any{consumerGroup, offset, base.Seconds(), max.Seconds()},
	}
}

// undeliveryQuery takes back a delivery counted by deliveryQuery whose
// message never reached the handler: the count drops and no delay applies.
func undeliveryQuery(topic, consumerGroup string, offset int64) wsql.Query {
	return wsql.Query{
		Query: `UPDATE ` + deliveriesTable(topic) + ` SET deliveries = deliveries - 1, visible_after = '-infinity'
WHERE consumer_group = $1 AND "offset" = $2`,
		Args: []any{consumerGroup, offset},
	}
}

// attemptsKey is where a Row carries the attempts the message had when it
// was read (the ack deletes the row only if it is unchanged).
const attemptsKey = "attempts"

// offsetKey is the metadata key of the row's offset on the message
// watermill-sql delivers (never on the message a handler sees).
const offsetKey = "_pgq_offset"

func (pgQueue) UnmarshalMessage(params wsql.UnmarshalMessageParams) (wsql.Row, error) {
	var (
		r        wsql.Row
		uuid     string
		attempts int32
	)
	if err := params.Row.Scan(&r.Offset, &uuid, &r.Payload, &r.Metadata, &attempts); err != nil {
		return wsql.Row{}, fmt.Errorf("scan message row: %w", err)
	}
	r.UUID = []byte(uuid)
	msg := message.NewMessage(uuid, r.Payload)
	if r.Metadata != nil {
		if err := json.Unmarshal(r.Metadata, &msg.Metadata); err != nil {
			return wsql.Row{}, fmt.Errorf("metadata of message %s: %w", uuid, err)
		}
	}
	// The nack needs the row; pgSubscriber removes the key from the copy
	// it hands to the handler.
	msg.Metadata.Set(offsetKey, strconv.FormatInt(r.Offset, 10))
	r.Msg = msg
	r.ExtraData = map[string]any{attemptsKey: attempts}
	return r, nil
}

// SubscribeIsolationLevel: READ COMMITTED, so a read sees every row committed
// before it and SKIP LOCKED passes the rows other reads hold. (watermill-sql's
// pgx adapter turns the zero level into SERIALIZABLE.)
func (pgQueue) SubscribeIsolationLevel() sql.IsolationLevel { return sql.LevelReadCommitted }

// AckMessageQuery deletes the handled message's row of the group and its
// deliveries row, unless a nack in the same transaction changed its
// attempts (then both stay).
func (pgQueueOffsets) AckMessageQuery(params wsql.AckMessageQueryParams) (wsql.Query, error) {
	attempts, ok := params.LastRow.ExtraData[attemptsKey].(int32)
	if !ok {
		return wsql.Query{}, fmt.Errorf("row %d has no attempts", params.LastRow.Offset)
	}
	return wsql.Query{
		Query: `WITH acked AS (
		DELETE FROM ` + queueTable(params.Topic) + ` WHERE consumer_group = $1 AND "offset" = $2 AND attempts = $3
		RETURNING consumer_group, "offset"
	)
DELETE FROM ` + deliveriesTable(params.Topic) + ` d USING acked
WHERE d.consumer_group = acked.consumer_group AND d."offset" = acked."offset"`,
		Args: []any{params.ConsumerGroup, params.LastRow.Offset, attempts},
	}, nil
}

// nackQuery makes the row visible again after a delay that doubles with each
// attempt (base, 2 base, 4 base, ... at most max) and bumps its attempts, so
// the ack that follows in the same transaction deletes nothing.
func nackQuery(topic, consumerGroup string, offset int64, base, max time.Duration) wsql.Query {
	return wsql.Query{
		Query: `UPDATE ` + queueTable(topic) + ` SET attempts = attempts + 1,
	visible_after = clock_timestamp() + make_interval(secs => least($3 * power(2, least(attempts, ` + strconv.Itoa(maxBackoffExponent) + `)), $4))
WHERE consumer_group = $1 AND "offset" = $2`,
		Args: []any{consumerGroup, offset, base.Seconds(), max.Seconds()},
	}
}

// BeforeSubscribingQueries registers the group. The first group of a topic
// takes over the messages published before any group existed; the lock
// waits for publishes in flight and holds new ones back until the
// registration commits (see InsertQuery), so none falls between the two.
func (pgQueueOffsets) BeforeSubscribingQueries(params wsql.BeforeSubscribingQueriesParams) ([]wsql.Query, error) {
	t := params.Topic
	return []wsql.Query{
		{Query: `LOCK TABLE ` + messagesTable(t) + ` IN SHARE ROW EXCLUSIVE MODE`},
		{
			Query: `WITH registered AS (
		INSERT INTO ` + groupsTable(t) + ` (consumer_group) VALUES ($1::varchar) ON CONFLICT DO NOTHING
	),
	moved AS (DELETE FROM ` + messagesTable(t) + ` RETURNING "offset", uuid, payload, metadata, created_at)
INSERT INTO ` + queueTable(t) + ` (consumer_group, "offset", uuid, payload, metadata, created_at)
SELECT $1::varchar, "offset", uuid, payload, metadata, created_at FROM moved
ON CONFLICT DO NOTHING`,
			Args: []any{params.ConsumerGroup},
		},
	}, nil
}

// SchemaInitializingQueries of the offsets adapter: none, the schema
// adapter's create every table.
func (pgQueueOffsets) SchemaInitializingQueries(wsql.OffsetsSchemaInitializingQueriesParams) ([]wsql.Query, error) {
	return nil, nil
}

// NextOffsetQuery: unused, a queue has no offset to continue from.
func (pgQueueOffsets) NextOffsetQuery(wsql.NextOffsetQueryParams) (wsql.Query, error) {
	return wsql.Query{}, nil
}

// ConsumedMessageQuery: none.
func (pgQueueOffsets) ConsumedMessageQuery(wsql.ConsumedMessageQueryParams) (wsql.Query, error) {
	return wsql.Query{}, nil
}
