package store

import (
	"bytes"
	"fmt"

	"github.com/PowerDNS/lmdb-go/lmdb"
)

// legacyNames are the DBIs eventstore v0.16.2's LMDB backend creates.
var legacyNames = []string{
	"settings", "raw", "created_at", "id", "kind", "pubkey", "pubkeyKind",
	"tag", "tag32", "tagaddr", "ptagKind", "hllCache",
}

// legacyDBIs are the eventstore DBIs found in the environment.
type legacyDBIs struct {
	raw    lmdb.DBI
	hasRaw bool
	all    []lmdb.DBI
	names  []string
}

func (l legacyDBIs) found() bool { return len(l.all) > 0 }

// openLegacy opens those of eventstore's DBIs that exist (without creating any).
func openLegacy(txn *lmdb.Txn) (legacyDBIs, error) {
	var l legacyDBIs
	for _, name := range legacyNames {
		dbi, err := txn.OpenDBI(name, 0)
		if lmdb.IsNotFound(err) {
			continue
		}
		if err != nil {
			return l, fmt.Errorf("open eventstore dbi %s: %w", name, err)
		}
		if name == "raw" {
			l.raw, l.hasRaw = dbi, true
		}
		l.all = append(l.all, dbi)
		l.names = append(l.names, name)
	}
	return l, nil
}

// migration counts what a migration did.
type migration struct {
	copied, duplicates, unreadable int
}

// migrate copies every event of eventstore's "raw" DBI into this layout, in eventstore's order
// (so serials keep the order events arrived in), s.migrateBatch per transaction. Progress is
// recorded in meta with each batch, so a migration cut short resumes where it stopped; an id
// already stored is skipped. Then it drops eventstore's DBIs, in one transaction.
func (s *Store) migrate(l legacyDBIs) error {
	log := s.log.With().Str("path", s.opts.Path).Logger()
	var m migration
	if l.hasRaw {
		log.Info().Msg("migrating eventstore data")
		for batches := 1; ; batches++ {
			start := s.nextSerial
			var more bool
			err := s.env.Update(func(txn *lmdb.Txn) error {
				txn.RawRead = true
				var err error
				more, err = s.copyBatch(txn, l.raw, &m)
				return err
			})
			if err != nil {
				s.nextSerial = start // the transaction stored nothing
			} else if s.afterMigrateBatch != nil {
				err = s.afterMigrateBatch()
			}
			if err != nil {
				return fmt.Errorf("migrate eventstore data (%d events copied): %w", m.copied, err)
			}
			if !more {
				break
			}
			if batches%100 == 0 {
				log.Info().Int("copied", m.copied).Int("duplicates", m.duplicates).Msg("migrating")
			}
		}
	}
	err := s.env.Update(func(txn *lmdb.Txn) error {
		for i, dbi := range l.all {
			if err := txn.Drop(dbi, true); err != nil {
				return fmt.Errorf("drop eventstore dbi %s: %w", l.names[i], err)
			}
		}
		if err := txn.Del(s.meta, []byte(metaLegacyProgress), nil); err != nil && !lmdb.IsNotFound(err) {
			return fmt.Errorf("clear migration progress: %w", err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("migrate eventstore data: %w", err)
	}
	log.Info().Int("copied", m.copied).Int("duplicates", m.duplicates).Int("unreadable", m.unreadable).
		Strs("dropped", l.names).Msg("migrated eventstore data")
	return nil
}

// copyBatch copies up to s.migrateBatch records after the recorded progress and records the
// new progress. It reports whether records are left.
func (s *Store) copyBatch(txn *lmdb.Txn, raw lmdb.DBI, m *migration) (more bool, err error) {
	cur, err := txn.OpenCursor(raw)
	if err != nil {
		return false, fmt.Errorf("open raw cursor: %w", err)
	}
	defer cur.Close()

	var k, v []byte
	done, err := txn.Get(s.meta, []byte(metaLegacyProgress))
	switch {
	case lmdb.IsNotFound(err):
		k, v, err = cur.Get(nil, nil, lmdb.First)
	case err != nil:
		return false, fmt.Errorf("read migration progress: %w", err)
	default:
		done = bytes.Clone(done)
		k, v, err = cur.Get(done, nil, lmdb.SetRange)
		if err == nil && bytes.Equal(k, done) {
			k, v, err = cur.Get(nil, nil, lmdb.Next)
		}
	}

	var last []byte
	for i := 0; i < s.migrateBatch && err == nil; i++ {
		if err := s.migrateOne(txn, k, v, m); err != nil {
			return false, err
		}
		last = append(last[:0], k...)
		k, v, err = cur.Get(nil, nil, lmdb.Next)
	}
	if err != nil && !lmdb.IsNotFound(err) {
		return false, fmt.Errorf("read raw: %w", err)
	}
	if last != nil {
		if err := txn.Put(s.meta, []byte(metaLegacyProgress), last, 0); err != nil {
			return false, fmt.Errorf("record migration progress: %w", err)
		}
	}
	return err == nil, nil
}

// migrateOne stores one eventstore record. A record that cannot be read is logged and
// skipped rather than failing the migration: a relay that will not start over one bad record
// helps nobody, and the log names it.
func (s *Store) migrateOne(txn *lmdb.Txn, k, v []byte, m *migration) error {
	evt, err := decodeLegacy(v)
	var fields parsed
	if err == nil {
		fields, err = parseFields(evt)
	}
	if err != nil {
		m.unreadable++
		s.log.Warn().Hex("serial", k).Err(err).Msg("skipping unreadable eventstore record")
		return nil
	}
	if _, ok, err := s.lookup(txn, fields.id); err != nil || ok {
		if ok {
			m.duplicates++
		}
		return err
	}
	// MaxEventBytes is a limit on what is accepted, not on what was accepted before.
	o := &op{kind: opSave, evt: evt, enc: encodeEvent(evt, fields), fields: fields}
	if err := s.insert(txn, o); err != nil {
		return err
	}
	m.copied++
	return nil
}
