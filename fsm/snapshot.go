package fsm

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/cockroachdb/pebble/v2"
	"github.com/klauspost/compress/s2"
)

// Snapshot stream format, version 1:
//
//	magic "HPTSNAP1"
//	s2 stream of:
//	  records: uvarint len(key) key uvarint len(value) value
//	  end:     uvarint 0
//	  sha256 of every record byte before the end marker (32 bytes)
//
// Keys are never empty, so a zero length marks the end. The checksum lets
// Restore refuse a truncated or corrupted stream before it replaces the
// live state.
var snapshotMagic = []byte("HPTSNAP1")

// ErrBadSnapshot is wrapped by every refusal of a snapshot stream.
var ErrBadSnapshot = errors.New("bad snapshot")

// maxRecord bounds one key or value read from a snapshot stream.
const maxRecord = 64 << 20

// A Snapshot is a point-in-time view of the whole state, cheap to take and
// streamed later (concurrently with Apply). Release must be called.
type Snapshot struct {
	snap  *pebble.Snapshot
	index uint64
	done  func()
}

// Index is the applied index the snapshot reflects.
func (s *Snapshot) Index() uint64 { return s.index }

// Snapshot captures the current state. It must be called from the apply
// goroutine (like Raft's FSM.Snapshot) so that the view corresponds exactly
// to AppliedIndex; it flushes the state first so the durable applied index
// is never behind a snapshot Raft may compact its log to.
func (f *FSM) Snapshot() (*Snapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.closed {
		return nil, ErrClosed
	}
	if err := f.db.Flush(); err != nil {
		return nil, fmt.Errorf("flush state before snapshot: %w", err)
	}
	return f.view(), nil
}

// View captures the current state like Snapshot, from any goroutine, for
// backups. Its index is read from the view itself.
func (f *FSM) View() (*Snapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.closed {
		return nil, ErrClosed
	}
	s := f.view()
	idx, err := readU64(s.snap, keyApplied)
	if err != nil {
		s.Release()
		return nil, fmt.Errorf("snapshot applied index: %w", err)
	}
	s.index = idx
	return s, nil
}

// view must be called with f.mu held.
func (f *FSM) view() *Snapshot {
	f.persisting.Add(1)
	return &Snapshot{snap: f.db.NewSnapshot(), index: f.applied.Load(), done: f.persisting.Done}
}

// Release frees the snapshot. It is safe to call more than once.
func (s *Snapshot) Release() {
	if s.snap == nil {
		return
	}
	s.snap.Close()
	s.snap = nil
	s.done()
}

// WriteTo streams the snapshot in the format above.
func (s *Snapshot) WriteTo(w io.Writer) (int64, error) {
	cw := &countingWriter{w: w}
	if _, err := cw.Write(snapshotMagic); err != nil {
		return cw.n, fmt.Errorf("write snapshot: %w", err)
	}
	zw := s2.NewWriter(cw)
	sum := sha256.New()
	out := bufio.NewWriterSize(io.MultiWriter(zw, sum), 256<<10)
	it, err := s.snap.NewIter(nil)
	if err != nil {
		return cw.n, fmt.Errorf("write snapshot: %w", err)
	}
	defer it.Close()
	var lenBuf [binary.MaxVarintLen64]byte
	writeBytes := func(b []byte) error {
		n := binary.PutUvarint(lenBuf[:], uint64(len(b)))
		if _, err := out.Write(lenBuf[:n]); err != nil {
			return err
		}
		_, err := out.Write(b)
		return err
	}
	for ok := it.First(); ok; ok = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			return cw.n, fmt.Errorf("write snapshot: read %q: %w", it.Key(), err)
		}
		if err := writeBytes(it.Key()); err != nil {
			return cw.n, fmt.Errorf("write snapshot: %w", err)
		}
		if err := writeBytes(v); err != nil {
			return cw.n, fmt.Errorf("write snapshot: %w", err)
		}
	}
	if err := it.Error(); err != nil {
		return cw.n, fmt.Errorf("write snapshot: %w", err)
	}
	if err := out.Flush(); err != nil {
		return cw.n, fmt.Errorf("write snapshot: %w", err)
	}
	if _, err := zw.Write([]byte{0}); err != nil {
		return cw.n, fmt.Errorf("write snapshot: %w", err)
	}
	if _, err := zw.Write(sum.Sum(nil)); err != nil {
		return cw.n, fmt.Errorf("write snapshot: %w", err)
	}
	if err := zw.Close(); err != nil {
		return cw.n, fmt.Errorf("write snapshot: %w", err)
	}
	return cw.n, nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// Restore replaces the whole state with the snapshot read from r. The new
// state is written to a fresh directory and switched to only once the
// stream has been read completely and its checksum verified, so a bad or
// truncated snapshot leaves the current state untouched. It must be called
// from the apply goroutine.
func (f *FSM) Restore(r io.Reader) error {
	// A snapshot being streamed holds the old database open.
	f.persisting.Wait()

	f.mu.RLock()
	oldName, err := currentDir(f.dir)
	f.mu.RUnlock()
	if err != nil {
		return err
	}
	n, _ := strconv.Atoi(strings.TrimPrefix(oldName, "state-"))
	newName := "state-" + strconv.Itoa(n+1)
	newPath := filepath.Join(f.dir, newName)
	if err := os.RemoveAll(newPath); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	db, err := openPebble(newPath, f.plog)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	index, err := load(db, r)
	if err == nil {
		err = db.Flush()
	}
	var active map[string]struct{}
	if err == nil {
		active, err = activeJobsIn(db)
	}
	if err != nil {
		db.Close()
		os.RemoveAll(newPath)
		return fmt.Errorf("restore: %w", err)
	}

	f.mu.Lock()
	if err := writeCurrent(f.dir, newName); err != nil {
		f.mu.Unlock()
		db.Close()
		os.RemoveAll(newPath)
		return fmt.Errorf("restore: %w", err)
	}
	old := f.db
	f.db = db
	f.accessGen.Add(1)
	f.active.reset(active)
	f.mu.Unlock()

	if err := old.Close(); err != nil {
		f.log.Warn("close replaced state", "err", err)
	}
	if err := os.RemoveAll(filepath.Join(f.dir, oldName)); err != nil {
		f.log.Warn("remove replaced state", "dir", oldName, "err", err)
	}
	f.setApplied(index)
	f.log.Info("state restored from snapshot", "index", index)
	return nil
}

// VerifySnapshot reads a whole snapshot stream and checks its format and
// checksum without storing anything; it returns the applied index the
// snapshot holds. Raft cannot survive a snapshot the state machine refuses
// halfway through a restore, so uploads are verified first.
func VerifySnapshot(r io.Reader) (uint64, error) {
	return load(nil, r)
}

// load reads a snapshot stream into an empty db (nil: only verify) and
// returns its applied index.
func load(db *pebble.DB, r io.Reader) (uint64, error) {
	magic := make([]byte, len(snapshotMagic))
	if _, err := io.ReadFull(r, magic); err != nil {
		return 0, fmt.Errorf("%w: read header: %v", ErrBadSnapshot, err)
	}
	if !bytes.Equal(magic, snapshotMagic) {
		return 0, fmt.Errorf("%w: header %q is not an hpt snapshot", ErrBadSnapshot, magic)
	}
	sum := sha256.New()
	zr := bufio.NewReaderSize(s2.NewReader(r), 256<<10)
	var b *pebble.Batch
	if db != nil {
		b = db.NewBatch()
		defer func() { b.Close() }()
	}
	var index uint64
	for records := 0; ; records++ {
		k, err := readRecord(zr, sum, true)
		if err != nil {
			return 0, fmt.Errorf("%w: record %d key: %v", ErrBadSnapshot, records, err)
		}
		if len(k) == 0 {
			break
		}
		v, err := readRecord(zr, sum, false)
		if err != nil {
			return 0, fmt.Errorf("%w: record %d value: %v", ErrBadSnapshot, records, err)
		}
		if bytes.Equal(k, keyApplied) {
			if len(v) != 8 {
				return 0, fmt.Errorf("%w: applied index has %d bytes", ErrBadSnapshot, len(v))
			}
			index = binary.BigEndian.Uint64(v)
		}
		if b == nil {
			continue
		}
		if err := b.Set(k, v, nil); err != nil {
			return 0, err
		}
		if b.Len() > 4<<20 {
			if err := b.Commit(pebble.NoSync); err != nil {
				return 0, err
			}
			b.Close()
			b = db.NewBatch()
		}
	}
	want := make([]byte, sha256.Size)
	if _, err := io.ReadFull(zr, want); err != nil {
		return 0, fmt.Errorf("%w: read checksum: %v", ErrBadSnapshot, err)
	}
	if !bytes.Equal(want, sum.Sum(nil)) {
		return 0, fmt.Errorf("%w: checksum mismatch", ErrBadSnapshot)
	}
	if b == nil {
		return index, nil
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return 0, err
	}
	return index, nil
}

// readRecord reads one length-prefixed key or value. A zero-length key is
// the end marker, which is not part of the checksum; a zero-length value is
// an ordinary (empty) value.
func readRecord(r *bufio.Reader, sum hash.Hash, isKey bool) ([]byte, error) {
	n, err := binary.ReadUvarint(r)
	if err != nil {
		return nil, err
	}
	if n > maxRecord {
		return nil, fmt.Errorf("length %d exceeds %d", n, maxRecord)
	}
	if n == 0 && isKey {
		return nil, nil
	}
	var lenBuf [binary.MaxVarintLen64]byte
	sum.Write(lenBuf[:binary.PutUvarint(lenBuf[:], n)])
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, err
	}
	sum.Write(b)
	return b, nil
}
