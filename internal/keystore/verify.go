package keystore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
)

// bbolt trusts its file: it follows page ids and element offsets straight
// into its memory map, so a corrupt or truncated file makes it panic, fault
// (SIGBUS past the end of a truncated file) or loop. checkBolt reads the
// file with plain reads and rejects it unless everything bbolt touches when
// opening, reading and writing it is consistent. The constants are bbolt's
// on-disk format version 2 (go.etcd.io/bbolt/internal/common), in native
// byte order as bbolt writes it.
const (
	boltMagic      = 0xED0CDAED
	boltVersion    = 2
	pageHeaderSize = 16 // id u64, flags u16, count u16, overflow u32
	metaSize       = 64 // magic, version, page size, flags u32; root, sequence, freelist, pgid, txid, checksum u64
	elemSize       = 16 // branch: pos, ksize u32, pgid u64; leaf: flags, pos, ksize, vsize u32
	bucketHdrSize  = 16 // root pgid u64, sequence u64; an inline bucket's page follows
	flagBranch     = 0x01
	flagLeaf       = 0x02
	flagFreelist   = 0x10
	leafBucket     = 0x01
	noFreelist     = ^uint64(0)
)

var ne = binary.NativeEndian

type boltMeta struct {
	valid                      bool
	pageSize                   uint64
	root, freelist, pgid, txid uint64
}

func parseMeta(b []byte) boltMeta {
	if len(b) < pageHeaderSize+metaSize {
		return boltMeta{}
	}
	m := b[pageHeaderSize : pageHeaderSize+metaSize]
	h := fnv.New64a()
	h.Write(m[:56])
	return boltMeta{
		valid:    ne.Uint32(m[0:]) == boltMagic && ne.Uint32(m[4:]) == boltVersion && ne.Uint64(m[56:]) == h.Sum64(),
		pageSize: uint64(ne.Uint32(m[8:])),
		root:     ne.Uint64(m[16:]),
		freelist: ne.Uint64(m[32:]),
		pgid:     ne.Uint64(m[40:]),
		txid:     ne.Uint64(m[48:]),
	}
}

// readAt returns up to n bytes at off; fewer at the end of the file.
func readAt(r io.ReaderAt, off int64, n int) []byte {
	b := make([]byte, n)
	got, _ := r.ReadAt(b, off)
	return b[:got]
}

// checkBolt checks the bbolt file r of the given size. The error describes
// the first inconsistency found.
func checkBolt(r io.ReaderAt, size int64) error {
	// Find the page size as bbolt does: from the first meta page, or else
	// from a second meta page at a power-of-two offset.
	var ps uint64
	found := false
	if b := readAt(r, 0, 4096); parseMeta(b).valid {
		if len(b) < 4096 {
			return fmt.Errorf("file is truncated: %d bytes, less than one page", size)
		}
		ps, found = parseMeta(b).pageSize, true
	}
	for i := 0; !found && i <= 14; i++ {
		pos := int64(1024) << i
		if pos >= size-1024 {
			break
		}
		if m := parseMeta(readAt(r, pos, 4096)); m.valid {
			ps, found = m.pageSize, true
		}
	}
	if !found {
		return errors.New("no valid meta page: not a bbolt file, or both meta pages are corrupt")
	}
	if ps < 1024 || ps > 1<<24 || ps&(ps-1) != 0 {
		return fmt.Errorf("page size %d is not supported", ps)
	}
	if uint64(size) < 2*ps {
		return fmt.Errorf("file is truncated: %d bytes, less than its two %d-byte meta pages", size, ps)
	}

	// Pick the meta page bbolt will use: the valid one with the higher txid.
	m0 := parseMeta(readAt(r, 0, pageHeaderSize+metaSize))
	m1 := parseMeta(readAt(r, int64(ps), pageHeaderSize+metaSize))
	meta, other := m0, m1
	if m1.txid > m0.txid {
		meta, other = m1, m0
	}
	if !meta.valid {
		meta = other
	}
	if !meta.valid {
		return errors.New("both meta pages are corrupt")
	}
	if meta.pageSize != ps {
		return fmt.Errorf("meta page says page size %d, file uses %d", meta.pageSize, ps)
	}
	if meta.pgid > uint64(size)/ps {
		return fmt.Errorf("file is truncated: %d bytes, its meta page says %d pages of %d bytes", size, meta.pgid, ps)
	}
	if meta.freelist == noFreelist {
		return errors.New("freelist not synced (hpt always writes it)")
	}

	w := &walker{r: r, ps: ps, pgid: meta.pgid, seen: make(map[uint64]bool)}
	free, err := w.freelist(meta.freelist)
	if err != nil {
		return err
	}
	if err := w.tree(meta.root, nil, nil); err != nil {
		return fmt.Errorf("root bucket: %w", err)
	}
	freed := make(map[uint64]bool, len(free))
	for _, id := range free {
		switch {
		case id < 2 || id >= w.pgid:
			return fmt.Errorf("freelist: page %d is outside the file's %d pages", id, w.pgid)
		case freed[id]:
			return fmt.Errorf("freelist: page %d is listed twice", id)
		case w.seen[id]:
			return fmt.Errorf("freelist: page %d is free and in use", id)
		}
		freed[id] = true
	}
	return nil
}

// walker reads pages, each at most once.
type walker struct {
	r    io.ReaderAt
	ps   uint64          // page size
	pgid uint64          // pages in use: ids are below it
	seen map[uint64]bool // pages read so far, overflow pages included
}

// page reads page id with its overflow pages.
func (w *walker) page(id uint64) ([]byte, error) {
	if id < 2 || id >= w.pgid {
		return nil, fmt.Errorf("page %d is outside the file's %d pages", id, w.pgid)
	}
	hdr := readAt(w.r, int64(id*w.ps), pageHeaderSize)
	if len(hdr) < pageHeaderSize {
		return nil, fmt.Errorf("page %d: short read", id)
	}
	overflow := uint64(ne.Uint32(hdr[12:]))
	if overflow >= w.pgid-id {
		return nil, fmt.Errorf("page %d: %d overflow pages run past the file's %d pages", id, overflow, w.pgid)
	}
	for p := id; p <= id+overflow; p++ {
		if w.seen[p] {
			return nil, fmt.Errorf("page %d is referenced twice", p)
		}
		w.seen[p] = true
	}
	n := (overflow + 1) * w.ps
	if n > 1<<30 {
		return nil, fmt.Errorf("page %d: %d bytes is too large", id, n)
	}
	buf := readAt(w.r, int64(id*w.ps), int(n))
	if uint64(len(buf)) != n {
		return nil, fmt.Errorf("page %d: short read", id)
	}
	if got := ne.Uint64(buf); got != id {
		return nil, fmt.Errorf("page %d identifies as page %d", id, got)
	}
	return buf, nil
}

func (w *walker) freelist(id uint64) ([]uint64, error) {
	buf, err := w.page(id)
	if err != nil {
		return nil, fmt.Errorf("freelist: %w", err)
	}
	if f := ne.Uint16(buf[8:]); f != flagFreelist {
		return nil, fmt.Errorf("freelist: page %d has type %#x", id, f)
	}
	n, start := uint64(ne.Uint16(buf[10:])), uint64(pageHeaderSize)
	if n == 0xFFFF { // the real count is in the first element
		n, start = ne.Uint64(buf[pageHeaderSize:]), start+8
	}
	if n > (uint64(len(buf))-start)/8 {
		return nil, fmt.Errorf("freelist: %d entries do not fit page %d", n, id)
	}
	ids := make([]uint64, n)
	for i := range ids {
		ids[i] = ne.Uint64(buf[start+8*uint64(i):])
	}
	return ids, nil
}

// span returns n bytes at element offset e plus pos within buf.
func span(buf []byte, e int, pos, n uint64) ([]byte, bool) {
	start := uint64(e) + pos
	if start+n > uint64(len(buf)) {
		return nil, false
	}
	return buf[start : start+n], true
}

// tree checks the B+tree rooted at page id, whose keys lie in [lo, hi)
// (hi nil: unbounded).
func (w *walker) tree(id uint64, lo, hi []byte) error {
	buf, err := w.page(id)
	if err != nil {
		return err
	}
	n := int(ne.Uint16(buf[10:]))
	switch f := ne.Uint16(buf[8:]); f {
	case flagLeaf:
		if err := w.leaf(buf, lo, hi); err != nil {
			return fmt.Errorf("page %d: %w", id, err)
		}
		return nil
	case flagBranch:
		if n == 0 {
			return fmt.Errorf("page %d: empty branch page", id)
		}
		if pageHeaderSize+n*elemSize > len(buf) {
			return fmt.Errorf("page %d: %d elements do not fit the page", id, n)
		}
		keys := make([][]byte, n)
		kids := make([]uint64, n)
		for i := range n {
			e := pageHeaderSize + i*elemSize
			k, ok := span(buf, e, uint64(ne.Uint32(buf[e:])), uint64(ne.Uint32(buf[e+4:])))
			if !ok {
				return fmt.Errorf("page %d: element %d: key runs past the page", id, i)
			}
			if len(k) == 0 {
				return fmt.Errorf("page %d: element %d: empty key", id, i)
			}
			if err := inOrder(k, keys[:i], lo, hi); err != nil {
				return fmt.Errorf("page %d: element %d: %w", id, i, err)
			}
			keys[i], kids[i] = k, ne.Uint64(buf[e+8:])
		}
		for i := range n {
			next := hi
			if i+1 < n {
				next = keys[i+1]
			}
			if err := w.tree(kids[i], keys[i], next); err != nil {
				return err
			}
		}
		return nil
	default:
		return fmt.Errorf("page %d has type %#x, want branch or leaf", id, f)
	}
}

// inOrder checks that key follows the keys before it and lies in [lo, hi).
func inOrder(key []byte, before [][]byte, lo, hi []byte) error {
	if len(before) > 0 && bytes.Compare(before[len(before)-1], key) >= 0 {
		return errors.New("keys out of order")
	}
	if bytes.Compare(key, lo) < 0 || hi != nil && bytes.Compare(key, hi) >= 0 {
		return errors.New("key outside its parent's range")
	}
	return nil
}

// leaf checks a leaf page (a real one or an inline bucket's).
func (w *walker) leaf(buf []byte, lo, hi []byte) error {
	n := int(ne.Uint16(buf[10:]))
	if pageHeaderSize+n*elemSize > len(buf) {
		return fmt.Errorf("%d elements do not fit the page", n)
	}
	var prev [][]byte
	for i := range n {
		e := pageHeaderSize + i*elemSize
		flags, pos := ne.Uint32(buf[e:]), uint64(ne.Uint32(buf[e+4:]))
		ksize, vsize := uint64(ne.Uint32(buf[e+8:])), uint64(ne.Uint32(buf[e+12:]))
		if flags&^leafBucket != 0 {
			return fmt.Errorf("element %d: unknown flags %#x", i, flags)
		}
		kv, ok := span(buf, e, pos, ksize+vsize)
		if !ok {
			return fmt.Errorf("element %d: key and value run past the page", i)
		}
		key, val := kv[:ksize], kv[ksize:]
		if len(key) == 0 {
			return fmt.Errorf("element %d: empty key", i)
		}
		if err := inOrder(key, prev, lo, hi); err != nil {
			return fmt.Errorf("element %d: %w", i, err)
		}
		prev = append(prev[:0], key)
		if flags&leafBucket != 0 {
			if err := w.bucket(val); err != nil {
				return fmt.Errorf("bucket %s: %w", quote(key), err)
			}
		}
	}
	return nil
}

// bucket checks a bucket header and the bucket's tree or inline page.
func (w *walker) bucket(val []byte) error {
	if len(val) < bucketHdrSize {
		return fmt.Errorf("bucket header is %d bytes, want %d", len(val), bucketHdrSize)
	}
	if root := ne.Uint64(val); root != 0 {
		return w.tree(root, nil, nil)
	}
	pg := val[bucketHdrSize:]
	if len(pg) < pageHeaderSize {
		return errors.New("inline bucket is too short")
	}
	if f := ne.Uint16(pg[8:]); f != flagLeaf {
		return fmt.Errorf("inline bucket has page type %#x, want leaf", f)
	}
	return w.leaf(pg, nil, nil)
}
