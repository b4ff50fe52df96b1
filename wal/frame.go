package wal

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
)

// Frame layout; see the package comment.
const (
	headerSize = 24
	version    = 1

	offVersion  = 4
	offReserved = 5
	offSeq      = 8
	offLen      = 16
	offCRC      = 20
)

var (
	magic      = []byte("CWAL")
	castagnoli = crc32.MakeTable(crc32.Castagnoli)
)

// header is the decoded form of a frame header.
type header struct {
	seq    uint64
	length uint32
	crc    uint32
}

// encodeHeader fills hdr for a frame holding payload. The CRC covers the
// header fields (everything before the CRC itself) and the payload, so a
// frame whose length or seq was torn or flipped fails the check just like
// one whose payload was.
func encodeHeader(hdr *[headerSize]byte, seq uint64, payload []byte) {
	copy(hdr[:], magic)
	hdr[offVersion] = version
	hdr[offReserved], hdr[offReserved+1], hdr[offReserved+2] = 0, 0, 0
	binary.LittleEndian.PutUint64(hdr[offSeq:], seq)
	binary.LittleEndian.PutUint32(hdr[offLen:], uint32(len(payload)))
	crc := crc32.Update(0, castagnoli, hdr[:offCRC])
	crc = crc32.Update(crc, castagnoli, payload)
	binary.LittleEndian.PutUint32(hdr[offCRC:], crc)
}

// decodeHeader checks the parts of a header that can be checked without the
// payload. room is how many bytes the file holds from the start of this
// header; a length that runs past it means a torn frame (or garbage), and
// catching it here avoids reading up to MaxPayloadSize of nonsense.
func decodeHeader(hdr *[headerSize]byte, room int64) (header, string) {
	if !bytes.Equal(hdr[:len(magic)], magic) {
		return header{}, "bad magic"
	}
	if hdr[offVersion] != version {
		return header{}, fmt.Sprintf("unknown frame format version %d", hdr[offVersion])
	}
	if hdr[offReserved]|hdr[offReserved+1]|hdr[offReserved+2] != 0 {
		return header{}, "reserved header bytes are not zero"
	}
	h := header{
		seq:    binary.LittleEndian.Uint64(hdr[offSeq:]),
		length: binary.LittleEndian.Uint32(hdr[offLen:]),
		crc:    binary.LittleEndian.Uint32(hdr[offCRC:]),
	}
	if h.length > MaxPayloadSize {
		return header{}, fmt.Sprintf("payload length %d exceeds limit", h.length)
	}
	if int64(h.length) > room-headerSize {
		return header{}, fmt.Sprintf("frame of %d payload bytes runs past end of file", h.length)
	}
	return h, ""
}

// frameError describes a frame that is not intact: torn, zeroed, garbage or
// corrupt. Whether that is a repairable tail or corruption is decided by the
// caller, which knows where in the log the frame sits.
type frameError struct {
	off    int64
	reason string
	// newer is set for a header with our magic and a format version
	// above ours. That is no torn write: a newer custos wrote it, and
	// repairing it away after a downgrade would drop acknowledged data.
	newer bool
}

func (e *frameError) Error() string { return fmt.Sprintf("offset %d: %s", e.off, e.reason) }

// frameReader reads consecutive frames from one segment file. Any error other
// than io.EOF (clean end at a frame boundary) or a *frameError is an I/O error.
type frameReader struct {
	r    *bufio.Reader
	off  int64 // file offset of the next frame
	size int64 // file size; frames must fit within it
	hdr  [headerSize]byte
}

func newFrameReader(f *os.File, size int64) *frameReader {
	return &frameReader{r: bufio.NewReaderSize(f, 256<<10), size: size}
}

// next reads and checks the next frame header, leaving the reader positioned
// at its payload.
func (fr *frameReader) next() (header, error) {
	room := fr.size - fr.off
	if room == 0 {
		return header{}, io.EOF
	}
	if room < headerSize {
		return header{}, &frameError{off: fr.off, reason: fmt.Sprintf("partial header (%d bytes)", room)}
	}
	if _, err := io.ReadFull(fr.r, fr.hdr[:]); err != nil {
		return header{}, fr.ioErr(err)
	}
	h, bad := decodeHeader(&fr.hdr, room)
	if bad != "" {
		newer := bytes.Equal(fr.hdr[:len(magic)], magic) && fr.hdr[offVersion] > version
		return header{}, &frameError{off: fr.off, reason: bad, newer: newer}
	}
	return h, nil
}

// verify checks the payload of the frame whose header next just returned
// against its CRC without keeping it, and moves to the following frame.
func (fr *frameReader) verify(h header) error {
	crc := crc32.Update(0, castagnoli, fr.hdr[:offCRC])
	for n := int(h.length); n > 0; {
		b, err := fr.r.Peek(min(n, fr.r.Size()))
		crc = crc32.Update(crc, castagnoli, b)
		fr.r.Discard(len(b))
		n -= len(b)
		if err != nil && n > 0 {
			return fr.ioErr(err)
		}
	}
	return fr.finish(h, crc)
}

// read returns the payload of the frame whose header next just returned,
// checked against its CRC, in a new slice the caller may keep.
func (fr *frameReader) read(h header) ([]byte, error) {
	payload := make([]byte, h.length)
	if _, err := io.ReadFull(fr.r, payload); err != nil {
		return nil, fr.ioErr(err)
	}
	crc := crc32.Update(0, castagnoli, fr.hdr[:offCRC])
	crc = crc32.Update(crc, castagnoli, payload)
	if err := fr.finish(h, crc); err != nil {
		return nil, err
	}
	return payload, nil
}

// skip moves past the payload of the frame whose header next just returned
// without reading it into memory or checking it.
func (fr *frameReader) skip(h header) error {
	if _, err := fr.r.Discard(int(h.length)); err != nil {
		return fr.ioErr(err)
	}
	fr.off += headerSize + int64(h.length)
	return nil
}

func (fr *frameReader) finish(h header, crc uint32) error {
	if crc != h.crc {
		return &frameError{off: fr.off, reason: fmt.Sprintf("checksum mismatch (frame seq %d, %d payload bytes)", h.seq, h.length)}
	}
	fr.off += headerSize + int64(h.length)
	return nil
}

// ioErr reports a failed read. The reader only asks for bytes the file size
// says exist, so running out early means the file shrank under us.
func (fr *frameReader) ioErr(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("offset %d: file shorter than its size: %w", fr.off, io.ErrUnexpectedEOF)
	}
	return fmt.Errorf("offset %d: %w", fr.off, err)
}

// intactFrameAfter reports the offset of the first intact frame with a seq of
// at least minSeq that starts after offset from, or -1. Open uses it to tell a
// torn tail (nothing valid follows the bad frame) from corruption in the
// middle of the log (acknowledged frames follow it): a flipped length field
// hides the frames behind it from a frame-by-frame walk, so this searches
// byte by byte for the magic and checks each candidate in full.
func intactFrameAfter(f *os.File, from, size int64, minSeq uint64) (int64, error) {
	const chunk = 1 << 20
	buf := make([]byte, chunk+len(magic)-1) // overlap so a magic across chunks is seen
	for base := from; base < size; base += chunk {
		n, err := f.ReadAt(buf[:min(int64(len(buf)), size-base)], base)
		if err != nil && !errors.Is(err, io.EOF) {
			return -1, err
		}
		b := buf[:n]
		for i := 0; ; {
			j := bytes.Index(b[i:], magic)
			if j < 0 || i+j >= chunk {
				break
			}
			off := base + int64(i+j)
			ok, err := intactFrameAt(f, off, size, minSeq)
			if err != nil {
				return -1, err
			}
			if ok {
				return off, nil
			}
			i += j + 1
		}
	}
	return -1, nil
}

// intactFrameAt reports whether a whole frame with a matching CRC and a seq of
// at least minSeq starts at off.
func intactFrameAt(f *os.File, off, size int64, minSeq uint64) (bool, error) {
	var hdr [headerSize]byte
	if size-off < headerSize {
		return false, nil
	}
	if _, err := f.ReadAt(hdr[:], off); err != nil {
		return false, err
	}
	h, bad := decodeHeader(&hdr, size-off)
	if bad != "" || h.seq < minSeq {
		return false, nil
	}
	fr := newFrameReader(f, size)
	fr.r.Reset(io.NewSectionReader(f, off+headerSize, int64(h.length)))
	fr.off, fr.hdr = off, hdr
	err := fr.verify(h)
	var fe *frameError
	if errors.As(err, &fe) {
		return false, nil
	}
	return err == nil, err
}
