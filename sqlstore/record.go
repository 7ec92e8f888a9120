package sqlstore

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"maps"
	"strings"
	"time"

	"github.com/scanfleet/scanfleet"
)

// recordKey identifies a record within its workspace.
type recordKey struct {
	kind scanfleet.RecordKind
	key  string
}

// pendingRecord is one distinct key of an ingest, with its fields merged
// from every record of the request that has the key.
type pendingRecord struct {
	recordKey
	data map[string]any
	id   string // made for the insert; the stored id when the key is known
	text string // the fields to store as canonical JSON
}

const recordInsertColumns = 9

// upsertRecordsSQL is the statement for one batch of records: a new key is
// inserted; a known key gets last_seen and last_task (when given), keeps
// its fields for now, and comes back with them, so that the merge can be
// done here. first_seen and first_task never change. Every row of the
// batch comes back: inserted with the id made for it, known with its own.
const upsertRecordsSQL = `INSERT INTO records (id, workspace_id, kind, key, data, first_seen, last_seen, first_task, last_task)
	VALUES %s
	ON CONFLICT (workspace_id, kind, key) DO UPDATE SET last_seen = excluded.last_seen,
		last_task = CASE WHEN excluded.last_task <> '' THEN excluded.last_task ELSE records.last_task END
	RETURNING id, kind, key, data`

// updateRecordDataSQL writes the merged fields of known keys that changed.
const updateRecordDataSQL = `INSERT INTO records (id, workspace_id, kind, key, data, first_seen, last_seen, first_task, last_task)
	VALUES %s
	ON CONFLICT (workspace_id, kind, key) DO UPDATE SET data = excluded.data`

// UpsertRecords stores records seen by task (may be "") at now, in one
// transaction, and counts which were new, changed or unchanged. Records of
// the same key within the request are merged first, later fields over
// earlier ones. Then, a batch at a time, one multi-row INSERT … ON CONFLICT
// … RETURNING inserts the new keys, moves last_seen (and last_task, when
// task is given) of the known ones, and hands back their stored fields; the
// new fields are laid over those, and when the canonical JSON of the result
// differs from the stored one, a second upsert writes the merged fields of
// the changed keys. first_seen and first_task never change, and a record
// seen again as it was gets only last_seen and last_task.
//
// Known keys are found by the conflict on the (workspace_id, kind, key)
// unique index, not by a SELECT: PostgreSQL plans a SELECT from statistics
// that know nothing of a workspace younger than the last ANALYZE, and
// would then scan every record of a growing workspace for each batch.
//
// An unknown workspace is ENOTFOUND; on any error nothing is written.
func (db *DB) UpsertRecords(ctx context.Context, workspace, task string, records []scanfleet.Record, now time.Time) (scanfleet.IngestResult, error) {
	pending := make([]*pendingRecord, 0, len(records))
	index := make(map[recordKey]*pendingRecord, len(records))
	for i, r := range records {
		if r.Kind == "" || r.Key == "" {
			return scanfleet.IngestResult{}, scanfleet.Errorf(scanfleet.EINVALID, "records[%d]: kind and key are required", i)
		}
		k := recordKey{r.Kind, r.Key}
		if p := index[k]; p != nil {
			maps.Copy(p.data, r.Data)
			continue
		}
		p := &pendingRecord{recordKey: k, data: make(map[string]any, len(r.Data))}
		maps.Copy(p.data, r.Data)
		index[k] = p
		pending = append(pending, p)
	}
	for _, p := range pending {
		text, err := canonicalJSON(p.data)
		if err != nil {
			return scanfleet.IngestResult{}, scanfleet.Errorf(scanfleet.EINVALID, "record %s %s: %v", p.kind, p.key, err)
		}
		p.id, p.text = scanfleet.NewID(), string(text)
	}

	res := scanfleet.IngestResult{Accepted: len(records)}
	ts := micros(now)
	per := db.batchRows(recordInsertColumns, BatchSize)
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		// Locking the workspace row serializes ingests into one workspace
		// (PostgreSQL), so that no other ingest writes between a batch's
		// read of the stored fields and the write of the merged ones.
		wsID, err := db.workspaceID(ctx, tx, workspace, true)
		if err != nil {
			return err
		}
		var changed []*pendingRecord
		args := make([]any, 0, per*recordInsertColumns)
		for start := 0; start < len(pending); start += per {
			batch := pending[start:min(start+per, len(pending))]
			args = args[:0]
			for _, p := range batch {
				args = append(args, p.id, wsID, string(p.kind), p.key, p.text, ts, ts, task, task)
			}
			rows, err := db.query(ctx, tx, fmt.Sprintf(upsertRecordsSQL, valuesList(len(batch), recordInsertColumns)), args...)
			if err != nil {
				return err
			}
			n, err := db.mergeStored(rows, index, &res, &changed)
			rows.Close()
			if err != nil {
				return err
			}
			if n != len(batch) {
				return fmt.Errorf("upsert returned %d rows for %d records", n, len(batch))
			}
		}
		for start := 0; start < len(changed); start += per {
			batch := changed[start:min(start+per, len(changed))]
			args = args[:0]
			for _, p := range batch {
				args = append(args, p.id, wsID, string(p.kind), p.key, p.text, ts, ts, task, task)
			}
			if _, err := db.exec(ctx, tx, fmt.Sprintf(updateRecordDataSQL, valuesList(len(batch), recordInsertColumns)), args...); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return scanfleet.IngestResult{}, wrap("upsert records", err)
	}
	return res, nil
}

// mergeStored reads the rows an upsert returned and classifies each key:
// new (the id made for it came back), unchanged, or changed, in which case
// its merged fields are set and it joins changed. It returns how many rows
// it read; the caller closes rows.
func (db *DB) mergeStored(rows *sql.Rows, index map[recordKey]*pendingRecord, res *scanfleet.IngestResult, changed *[]*pendingRecord) (int, error) {
	n := 0
	for rows.Next() {
		n++
		var (
			id, data string
			k        recordKey
		)
		if err := rows.Scan(&id, &k.kind, &k.key, &data); err != nil {
			return n, err
		}
		p := index[k]
		if p == nil {
			return n, fmt.Errorf("upsert returned record %s %s, which was not sent", k.kind, k.key)
		}
		if id == p.id {
			res.New++
			continue
		}
		p.id = id
		stored, err := decodeObject(data)
		if err != nil {
			return n, fmt.Errorf("record %s %s: decode data: %w", k.kind, k.key, err)
		}
		// Compare in canonical form, whatever form the stored fields were
		// written in.
		before, err := canonicalJSON(stored)
		if err != nil {
			return n, fmt.Errorf("record %s %s: encode data: %w", k.kind, k.key, err)
		}
		maps.Copy(stored, p.data)
		after, err := canonicalJSON(stored)
		if err != nil {
			return n, scanfleet.Errorf(scanfleet.EINVALID, "record %s %s: %v", k.kind, k.key, err)
		}
		if bytes.Equal(before, after) {
			res.Unchanged++
			continue
		}
		res.Changed++
		p.text = string(after)
		*changed = append(*changed, p)
	}
	return n, rows.Err()
}

const recordColumns = "r.id, w.name, r.kind, r.key, r.data, r.first_seen, r.last_seen, r.first_task, r.last_task"

func scanRecord(r rowScanner) (*scanfleet.Record, error) {
	var (
		rec         scanfleet.Record
		data        string
		first, last int64
	)
	if err := r.Scan(&rec.ID, &rec.Workspace, &rec.Kind, &rec.Key, &data, &first, &last, &rec.FirstTask, &rec.LastTask); err != nil {
		return nil, err
	}
	m, err := decodeObject(data)
	if err != nil {
		return nil, fmt.Errorf("record %s: decode data: %w", rec.ID, err)
	}
	rec.Data = m
	rec.FirstSeen, rec.LastSeen = fromMicros(first), fromMicros(last)
	return &rec, nil
}

// escapeLike escapes the LIKE wildcards of s with '\'.
func escapeLike(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

// ListRecords returns one page of records in id order (first seen first).
// An unknown workspace is ENOTFOUND; no workspace lists every workspace's.
// Search matches a substring of the key, ignoring ASCII case in both
// engines.
func (db *DB) ListRecords(ctx context.Context, f scanfleet.RecordFilter) ([]*scanfleet.Record, string, error) {
	page, err := normalizePage(f.Page)
	if err != nil {
		return nil, "", err
	}
	var (
		where []string
		args  []any
	)
	if f.Workspace != "" {
		wsID, err := db.workspaceID(ctx, db.read, f.Workspace, false)
		if err != nil {
			return nil, "", err
		}
		where = append(where, "r.workspace_id = ?")
		args = append(args, wsID)
	}
	if f.Kind != "" {
		where = append(where, "r.kind = ?")
		args = append(args, string(f.Kind))
	}
	if f.Key != "" {
		where = append(where, "r.key = ?")
		args = append(args, f.Key)
	}
	if f.Search != "" {
		where = append(where, `LOWER(r.key) LIKE ? ESCAPE '\'`)
		args = append(args, "%"+escapeLike(strings.ToLower(f.Search))+"%")
	}
	if f.Task != "" {
		where = append(where, "r.last_task = ?")
		args = append(args, f.Task)
	}
	if !f.SeenSince.IsZero() {
		where = append(where, "r.last_seen >= ?")
		args = append(args, micros(f.SeenSince))
	}
	if page.Cursor != "" {
		parts, err := decodeCursor(page.Cursor, 1)
		if err != nil {
			return nil, "", err
		}
		where = append(where, "r.id > ?")
		args = append(args, parts[0])
	}
	args = append(args, page.Limit+1)
	rows, err := db.query(ctx, db.read, "SELECT "+recordColumns+" FROM records r JOIN workspaces w ON w.id = r.workspace_id"+
		whereClause(where)+" ORDER BY r.id LIMIT ?", args...)
	all, err := scanAll(rows, err, scanRecord)
	if err != nil {
		return nil, "", fmt.Errorf("list records: %w", err)
	}
	out, next := pageOf(all, page.Limit, func(r *scanfleet.Record) string { return encodeCursor(r.ID) })
	return out, next, nil
}

// CountRecords counts the workspace's records per kind (every workspace's
// when workspace is ""); every kind is present, zero when none. An unknown
// workspace is ENOTFOUND.
func (db *DB) CountRecords(ctx context.Context, workspace string) (map[scanfleet.RecordKind]int64, error) {
	query := "SELECT kind, COUNT(*) FROM records"
	var args []any
	if workspace != "" {
		wsID, err := db.workspaceID(ctx, db.read, workspace, false)
		if err != nil {
			return nil, err
		}
		query += " WHERE workspace_id = ?"
		args = append(args, wsID)
	}
	rows, err := db.query(ctx, db.read, query+" GROUP BY kind", args...)
	out, err := countBy(rows, err, scanfleet.RecordKinds)
	if err != nil {
		return nil, fmt.Errorf("count records: %w", err)
	}
	return out, nil
}
