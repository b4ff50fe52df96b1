package client

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strings"
)

// The CSV reader is written here rather than taken from encoding/csv for
// three reasons: it keeps only the AuditData cell instead of allocating
// every field of every row, it bounds memory when a quote is never closed
// (encoding/csv would read the rest of the file into one field), and it can
// report a bad row and carry on with the next one.

// csvState is where the row parser is within a row.
type csvState int

const (
	csvFieldStart csvState = iota
	csvUnquoted
	csvQuoted
	csvQuote // a '"' inside a quoted field: either "" or the closing quote
)

// maxHeaderBytes bounds the header row, which is kept whole: a file that
// is not CSV at all should fail fast, not fill memory.
const maxHeaderBytes = 64 << 10

// csvRow is one parsed row.
type csvRow struct {
	line    int      // where the row starts
	fields  int      // number of fields
	all     []string // every field, when asked for (the header)
	kept    []byte   // the field asked for, up to the limit
	keptLen int      // its full length
	problem string   // why the row is malformed
	blank   bool     // an empty line
}

// readRow parses one CSV row (RFC 4180: comma separated, fields optionally
// quoted, "" for a quote inside quotes, line breaks allowed inside quotes).
// It keeps field keep, or every field when keep is negative. At the end of
// the input it returns io.EOF; inside an unclosed quote, an error.
func (r *RecordReader) readRow(keep int, limit int) (csvRow, error) {
	row := csvRow{line: r.line + 1}
	r.buf = r.buf[:0]
	var field []byte // the current field when keeping all
	st := csvFieldStart
	seen := false   // any byte of this row read
	quoted := false // a quoted field was seen
	total := 0      // bytes of all fields

	add := func(b []byte) {
		total += len(b)
		if keep < 0 {
			if total <= limit {
				field = append(field, b...)
			}
		} else if row.fields == keep {
			row.keptLen += len(b)
			if len(r.buf) < limit {
				r.buf = append(r.buf, b...)
			}
		}
	}
	endField := func() {
		if keep < 0 && total <= limit {
			row.all = append(row.all, string(field))
			field = field[:0]
		}
		row.fields++
	}
	bad := func(msg string) {
		if row.problem == "" {
			row.problem = fmt.Sprintf("invalid CSV: %s", msg)
		}
	}

	for {
		s, err := r.br.ReadSlice('\n')
		if len(s) > 0 {
			seen = true
		}
		if err != nil && err != io.EOF && err != bufio.ErrBufferFull {
			return row, fmt.Errorf("line %d: %w", r.line+1, err)
		}
		eol := len(s) > 0 && s[len(s)-1] == '\n'
		if eol {
			r.line++
		}
		for len(s) > 0 {
			switch st {
			case csvFieldStart:
				if s[0] == '"' {
					st, s, quoted = csvQuoted, s[1:], true
					continue
				}
				st = csvUnquoted
			case csvUnquoted:
				i := indexCommaOrEOL(s)
				seg := s
				if i >= 0 {
					seg = s[:i]
				}
				if i >= 0 && s[i] == '\n' {
					seg = bytes.TrimSuffix(seg, []byte{'\r'})
				}
				if bytes.IndexByte(seg, '"') >= 0 {
					bad(fmt.Sprintf("a quote inside an unquoted field (column %d)", row.fields+1))
				}
				add(seg)
				if i < 0 {
					s = nil
					continue
				}
				c := s[i]
				s = s[i+1:]
				endField()
				if c == '\n' {
					row.blank = row.fields == 1 && total == 0 && !quoted
					return row, nil
				}
				st = csvFieldStart
			case csvQuoted:
				i := bytes.IndexByte(s, '"')
				if i < 0 {
					add(s)
					s = nil
					continue
				}
				add(s[:i])
				st, s = csvQuote, s[i+1:]
			case csvQuote:
				switch s[0] {
				case '"':
					add(s[:1])
					st, s = csvQuoted, s[1:]
				case ',':
					endField()
					st, s = csvFieldStart, s[1:]
				case '\r':
					s = s[1:]
				case '\n':
					endField()
					return row, nil
				default:
					bad(fmt.Sprintf("text after the closing quote of column %d", row.fields+1))
					st = csvUnquoted // read on to the next comma or line end
				}
			}
		}
		if err == io.EOF {
			switch {
			case !seen && st == csvFieldStart && row.fields == 0:
				return row, io.EOF
			case st == csvQuoted:
				return row, fmt.Errorf("line %d: a quoted field opened there is never closed; the rest of the input was read as part of it", row.line)
			}
			endField()
			row.blank = row.fields == 1 && total == 0 && !quoted
			return row, nil
		}
	}
}

func indexCommaOrEOL(s []byte) int {
	for i, c := range s {
		if c == ',' || c == '\n' {
			return i
		}
	}
	return -1
}

// readHeader reads the header row and finds the AuditData column.
func (r *RecordReader) readHeader() error {
	row, err := r.readRow(-1, maxHeaderBytes)
	if err != nil && err != io.EOF {
		return fmt.Errorf("%w (%v)", errNotRecognised(row.all), err)
	}
	for i, name := range row.all {
		if strings.EqualFold(strings.TrimSpace(name), "AuditData") {
			r.csvAudit, r.csvColumns = i, len(row.all)
			return nil
		}
	}
	return errNotRecognised(row.all)
}

func errNotRecognised(header []string) error {
	first := strings.Join(header, ",")
	if len(first) > 80 {
		first = first[:80] + "…"
	}
	return fmt.Errorf("not NDJSON, a JSON array, or a CSV export with an AuditData column (the first line reads %q)", first)
}

// nextRow returns the AuditData cell of the next data row.
func (r *RecordReader) nextRow() (Record, error) {
	for {
		row, err := r.readRow(r.csvAudit, MaxRecordBytes+1024)
		if err != nil {
			return Record{}, err
		}
		rec := Record{Line: row.line}
		switch {
		case row.blank:
			continue
		case row.problem != "":
			rec.Problem = row.problem
		case row.fields <= r.csvAudit:
			rec.Problem = fmt.Sprintf("row has %d columns, the header has %d; no AuditData", row.fields, r.csvColumns)
		case row.keptLen > MaxRecordBytes+1024:
			rec.Problem = tooBig(row.keptLen)
		case len(bytes.TrimSpace(r.buf)) == 0:
			rec.Problem = "empty AuditData"
		default:
			rec.Data = r.buf
		}
		return rec, nil
	}
}
