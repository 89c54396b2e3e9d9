package overlay

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dfaas-go/dfaas"
)

// seqBlock is how many sequence numbers a SeqFile reserves per write: a
// node publishing 20 adverts a second writes about once every 14 hours.
const seqBlock = 1 << 20

// SeqFile is a dfaas.Sequencer that survives restarts whatever the clock
// does: it keeps, in a file next to the node's key, a mark above every
// number it may have handed out, and reserves numbers in blocks, writing
// the new mark (atomically, synced) before handing out any number below
// it. A restarted node starts at the mark - or at its clock in
// nanoseconds, if that is higher, so that a node that lost the file still
// starts above its old numbers while its clock is right. A crash costs at
// most the unused rest of a block.
type SeqFile struct {
	path string
	mu   sync.Mutex
	next uint64 // the number Next hands out next
	mark uint64 // every number below it may be handed out
}

// NewSeqFile opens (or starts) the sequence file at path; now is the clock
// (time.Now if nil).
func NewSeqFile(path string, now func() time.Time) (*SeqFile, error) {
	if now == nil {
		now = time.Now
	}
	s := &SeqFile{path: path, next: uint64(now().UnixNano())}
	raw, err := readPrivate(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("overlay: sequence file: %w", err)
	default:
		mark, err := strconv.ParseUint(strings.TrimSpace(string(raw)), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%w: overlay: sequence file %s: %w", dfaas.ErrInvalidConfig, path, err)
		}
		s.next = max(s.next, mark)
	}
	if err := s.reserve(); err != nil {
		return nil, err
	}
	return s, nil
}

// Next implements dfaas.Sequencer.
func (s *SeqFile) Next() (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.next >= s.mark {
		if err := s.reserve(); err != nil {
			return 0, err
		}
	}
	n := s.next
	s.next++
	return n, nil
}

// reserve writes a mark one block above next.
func (s *SeqFile) reserve() error {
	mark := s.next + seqBlock
	f, err := os.CreateTemp(filepath.Dir(s.path), ".seq-*")
	if err != nil {
		return fmt.Errorf("overlay: sequence file: %w", err)
	}
	_, err = f.WriteString(strconv.FormatUint(mark, 10) + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), s.path)
	}
	if err != nil {
		_ = os.Remove(f.Name())
		return fmt.Errorf("overlay: sequence file: %w", err)
	}
	s.mark = mark
	return nil
}

var _ dfaas.Sequencer = (*SeqFile)(nil)
