package client

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// MaxRecordBytes is the server's limit on one record. The reader rejects
// longer records itself, with the server's wording, rather than uploading a
// megabyte only to have it refused; it also keeps memory bounded when a
// file has no line breaks at all.
const MaxRecordBytes = 1 << 20

// Format is the layout of an input.
type Format int

// The layouts a RecordReader understands.
const (
	FormatNDJSON     Format = iota // one JSON record per line
	FormatJSONArray                // one JSON array of records
	FormatPurviewCSV               // a Microsoft Purview audit search export: CSV with the record JSON in the AuditData column
)

func (f Format) String() string {
	switch f {
	case FormatNDJSON:
		return "NDJSON"
	case FormatJSONArray:
		return "JSON array"
	case FormatPurviewCSV:
		return "Purview CSV"
	}
	return fmt.Sprintf("Format(%d)", int(f))
}

// Record is one record read from an input.
type Record struct {
	// Data is the record's JSON without surrounding white space: an NDJSON
	// line; a JSON array element exactly as its bytes appear in the input,
	// which may span lines; or a CSV AuditData cell, made one line if it
	// spans several. It is valid until the next call of Next.
	Data []byte
	// Line is the 1-based line of the decompressed input where the record
	// starts.
	Line int
	// Problem, when not empty, says why the record cannot be sent (it could
	// not be split from the input, or is over MaxRecordBytes); Data is then
	// empty and the record counts as rejected.
	Problem string
}

// RecordReader splits an input into records. It detects gzip and zstd
// compression by their magic bytes, then the layout: a JSON array when the
// first byte that is not white space is '[', NDJSON when it is '{', and
// otherwise a CSV whose header names an AuditData column.
type RecordReader struct {
	br          *bufio.Reader
	closeDec    func()
	compression string
	format      Format
	line        int // line breaks consumed so far
	buf         []byte
	compact     []byte
	err         error // sticky: io.EOF or a fatal error

	arrayStarted bool // a JSON array element has been read

	csvAudit   int // index of the AuditData column
	csvColumns int // columns in the header
}

// readBufSize is big enough that nearly every record is handed out from
// the bufio buffer without a copy.
const readBufSize = 256 << 10

// NewRecordReader returns a reader of the records in r. Close it when done.
func NewRecordReader(r io.Reader) (*RecordReader, error) {
	rr := &RecordReader{compression: "none", closeDec: func() {}}
	br := bufio.NewReaderSize(r, 64<<10)
	magic, _ := br.Peek(4)
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		rr.compression, rr.closeDec = "gzip", func() { zr.Close() }
		rr.br = bufio.NewReaderSize(zr, readBufSize)
	case bytes.Equal(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, err := zstd.NewReader(br, zstd.WithDecoderMaxWindow(128<<20))
		if err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
		rr.compression, rr.closeDec = "zstd", zr.Close
		rr.br = bufio.NewReaderSize(zr, readBufSize)
	default:
		rr.br = bufio.NewReaderSize(br, readBufSize)
	}
	if err := rr.detect(); err != nil {
		rr.Close()
		return nil, err
	}
	return rr, nil
}

// Format is the detected layout.
func (r *RecordReader) Format() Format { return r.format }

// Compression is the detected compression: "none", "gzip" or "zstd".
func (r *RecordReader) Compression() string { return r.compression }

// Close releases the decompressor; it does not close the underlying reader.
func (r *RecordReader) Close() error {
	r.closeDec()
	r.closeDec = func() {}
	return nil
}

// Next returns the next record; io.EOF at the end. Any other error means
// the rest of the input cannot be read (corrupt compression, or a JSON
// array or CSV quote broken so that the records after it cannot be found);
// it names the line.
func (r *RecordReader) Next() (Record, error) {
	if r.err != nil {
		return Record{}, r.err
	}
	var rec Record
	var err error
	switch r.format {
	case FormatNDJSON:
		rec, err = r.nextLine()
	case FormatJSONArray:
		rec, err = r.nextElement()
	default:
		rec, err = r.nextRow()
	}
	if err != nil {
		r.err = err
		return Record{}, err
	}
	if rec.Problem == "" {
		rec.Data, rec.Problem = r.check(rec.Data)
	}
	return rec, nil
}

// detect skips a byte order mark and leading white space, then decides the
// layout from the first byte.
func (r *RecordReader) detect() error {
	if bom, _ := r.br.Peek(3); bytes.Equal(bom, []byte("\ufeff")) {
		r.br.Discard(3)
	} else if len(bom) >= 2 && (bom[0] == 0xff && bom[1] == 0xfe || bom[0] == 0xfe && bom[1] == 0xff) {
		return errors.New("the input is UTF-16 text; convert it to UTF-8 first")
	}
	c, err := r.skipSpace()
	if err == io.EOF {
		r.format, r.err = FormatNDJSON, io.EOF // nothing to read
		return nil
	}
	if err != nil {
		return err
	}
	switch c {
	case '[':
		r.format = FormatJSONArray
		return nil
	case '{':
		r.format = FormatNDJSON
		return r.br.UnreadByte()
	}
	r.format = FormatPurviewCSV
	if err := r.br.UnreadByte(); err != nil {
		return err
	}
	return r.readHeader()
}

// skipSpace reads up to the first byte that is not JSON white space,
// counting lines.
func (r *RecordReader) skipSpace() (byte, error) {
	for {
		c, err := r.br.ReadByte()
		if err != nil {
			return 0, err
		}
		switch c {
		case '\n':
			r.line++
		case ' ', '\t', '\r':
		default:
			return c, nil
		}
	}
}

func tooBig(n int) string {
	// The server's wording, so a record refused here reads like one
	// refused there.
	return fmt.Sprintf("record is %d bytes, over the %d byte limit", n, MaxRecordBytes)
}

// check makes sure a record is one JSON object within the size limit. A
// JSON array element is passed on byte for byte, line breaks and all (the
// Uploader sends such records as a JSON array). A CSV cell may hold
// pretty-printed JSON spread over several lines; its white space between
// tokens is dropped so that it travels as one NDJSON line.
func (r *RecordReader) check(data []byte) ([]byte, string) {
	data = bytes.TrimSpace(data)
	if len(data) > MaxRecordBytes {
		return nil, tooBig(len(data))
	}
	if len(data) == 0 {
		return nil, "empty record"
	}
	if r.format != FormatJSONArray && (bytes.IndexByte(data, '\n') >= 0 || bytes.IndexByte(data, '\r') >= 0) {
		var problem string
		r.compact, problem = compactJSON(r.compact[:0], data)
		if problem != "" {
			return nil, problem
		}
		data = r.compact
	}
	if data[0] != '{' {
		// The server reads a body starting with '[' as a JSON array, so a
		// stray array line at the head of a batch would garble the batch.
		return nil, "not a JSON object"
	}
	return data, ""
}

const lineBreakInString = "line break inside a JSON string (not valid JSON)"

// jsonString follows whether the bytes of JSON text lie inside a string.
type jsonString struct{ in, escaped bool }

// step consumes c and reports whether it lies inside a string (the
// closing quote does; the opening one does not), and whether it is a raw
// line break there, which JSON forbids.
func (s *jsonString) step(c byte) (inside, broken bool) {
	if !s.in {
		s.in = c == '"'
		return false, false
	}
	switch {
	case s.escaped:
		s.escaped = false
	case c == '\\':
		s.escaped = true
	case c == '"':
		s.in = false
	case c == '\n' || c == '\r':
		return true, true
	}
	return true, false
}

// compactJSON appends src to dst without the white space between tokens,
// except that it keeps one space between two words or numbers: dropping it
// would turn invalid JSON ("1 2") into valid ("12"). A line break inside a
// string cannot be carried on one line and makes the record a problem.
func compactJSON(dst, src []byte) ([]byte, string) {
	var str jsonString
	space := false
	for _, c := range src {
		if inside, broken := str.step(c); inside {
			if broken {
				return dst, lineBreakInString
			}
			dst = append(dst, c)
			continue
		}
		switch c {
		case ' ', '\t', '\r', '\n':
			space = true
			continue
		}
		if space && len(dst) > 0 && isWordByte(dst[len(dst)-1]) && isWordByte(c) {
			dst = append(dst, ' ')
		}
		space = false
		dst = append(dst, c)
	}
	return dst, ""
}

// nextLine returns the next non-blank line of NDJSON.
func (r *RecordReader) nextLine() (Record, error) {
	for {
		s, err := r.br.ReadSlice('\n')
		if len(s) == 0 && err != nil {
			if err == io.EOF {
				return Record{}, io.EOF
			}
			return Record{}, fmt.Errorf("line %d: %w", r.line+1, err)
		}
		r.line++
		rec := Record{Line: r.line}
		if err == bufio.ErrBufferFull {
			// A line longer than the buffer: collect it up to the limit,
			// then only count the rest.
			r.buf = append(r.buf[:0], s...)
			n := len(s)
			for err == bufio.ErrBufferFull {
				s, err = r.br.ReadSlice('\n')
				n += len(s)
				if len(r.buf) <= MaxRecordBytes+1024 {
					r.buf = append(r.buf, s...)
				}
			}
			if err != nil && err != io.EOF {
				return Record{}, fmt.Errorf("line %d: %w", r.line, err)
			}
			if len(r.buf) > MaxRecordBytes+1024 {
				if err == nil {
					n-- // the line break
				}
				return Record{Line: r.line, Problem: tooBig(n)}, nil
			}
			s = r.buf
		} else if err != nil && err != io.EOF {
			return Record{}, fmt.Errorf("line %d: %w", r.line, err)
		}
		rec.Data = bytes.TrimSpace(s)
		if len(rec.Data) == 0 {
			continue
		}
		return rec, nil
	}
}

// nextElement returns the next element of a JSON array, byte for byte as
// it is in the input. It only tracks strings and nesting to find where an
// element ends; whether the element is valid JSON is for the Uploader
// (elements that span lines) or the server to judge.
func (r *RecordReader) nextElement() (Record, error) {
	c, err := r.skipSpace()
	if err != nil {
		return Record{}, r.arrayEOF(err)
	}
	if c == ']' {
		return Record{}, r.arrayEnd()
	}
	if r.arrayStarted {
		if c != ',' {
			return Record{}, fmt.Errorf("line %d: malformed JSON array: want ',' or ']' after an element, found %q; the rest of the input was not read", r.line+1, c)
		}
		if c, err = r.skipSpace(); err != nil {
			return Record{}, r.arrayEOF(err)
		}
	}
	r.arrayStarted = true
	r.br.UnreadByte()
	rec := Record{Line: r.line + 1}
	r.buf = r.buf[:0]
	size := 0 // bytes of the element before this chunk
	depth := 0
	var str jsonString
	for {
		// Scan what is buffered in place: far faster than byte by byte.
		if r.br.Buffered() == 0 {
			if _, err := r.br.Peek(1); err != nil {
				if err == io.EOF {
					return Record{}, fmt.Errorf("line %d: the input ends inside the JSON array element that starts there", rec.Line)
				}
				return Record{}, fmt.Errorf("line %d: %w", r.line+1, err)
			}
		}
		chunk, _ := r.br.Peek(r.br.Buffered())
		for i, c := range chunk {
			if c == '\n' {
				r.line++
			}
			if inside, broken := str.step(c); inside {
				if broken {
					rec.Problem = lineBreakInString
				}
			} else {
				switch c {
				case '{', '[':
					depth++
				case '}', ']', ',':
					if depth == 0 {
						if size+i == 0 {
							return Record{}, fmt.Errorf("line %d: malformed JSON array: unexpected %q; the rest of the input was not read", r.line+1, c)
						}
						size = r.keep(chunk[:i], size)
						r.br.Discard(i)
						return r.element(rec, size), nil
					}
					if c != ',' {
						depth--
					}
				}
			}
			if depth == 0 && !str.in && (c == '}' || c == ']') {
				size = r.keep(chunk[:i+1], size)
				r.br.Discard(i + 1)
				return r.element(rec, size), nil
			}
		}
		size = r.keep(chunk, size)
		r.br.Discard(len(chunk))
	}
}

// elementLimit bounds the bytes of a JSON array element kept in r.buf; the
// rest is only counted, to report the element's size.
const elementLimit = MaxRecordBytes + 1024

// keep appends the bytes b of the element being read to r.buf, up to
// elementLimit, and returns size, the element's bytes so far, plus len(b).
func (r *RecordReader) keep(b []byte, size int) int {
	if room := elementLimit - len(r.buf); room > 0 {
		r.buf = append(r.buf, b[:min(room, len(b))]...)
	}
	return size + len(b)
}

func isWordByte(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-' || c == '+' || c == '.'
}

func (r *RecordReader) element(rec Record, size int) Record {
	switch {
	case size > elementLimit:
		rec.Problem = tooBig(size)
	case rec.Problem == "":
		rec.Data = r.buf
	}
	return rec
}

func (r *RecordReader) arrayEOF(err error) error {
	if err == io.EOF {
		return fmt.Errorf("line %d: the input ends before the JSON array is closed with ']'", r.line+1)
	}
	return fmt.Errorf("line %d: %w", r.line+1, err)
}

// arrayEnd checks that only white space follows the closing bracket.
func (r *RecordReader) arrayEnd() error {
	c, err := r.skipSpace()
	if err == io.EOF {
		return io.EOF
	}
	if err != nil {
		return fmt.Errorf("line %d: %w", r.line+1, err)
	}
	return fmt.Errorf("line %d: unexpected %q after the end of the JSON array", r.line+1, c)
}
