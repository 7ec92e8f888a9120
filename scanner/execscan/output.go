package execscan

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/scanfleet/scanfleet"
	"github.com/scanfleet/scanfleet/internal/lineread"
)

// maxSkipLogs bounds the log lines about skipped invalid lines; later ones
// are counted only, so a program printing garbage cannot flood the log.
const maxSkipLogs = 100

// output ingests a program's stdout: JSON Lines, each line a native record
// or a Faraday bulk_create document, handed to env.Emit as it arrives.
// It is used by one Run only.
type output struct {
	env         scanfleet.ExecEnv
	maxLine     int
	skipInvalid bool

	lines   int64 // lines read, blank ones included
	records int64 // records emitted
	skipped int64 // invalid lines skipped (skip_invalid_lines)
}

// read ingests r until EOF or the first error: a line over the limit
// (never cut or dropped), a line that is not a record unless skipInvalid,
// or a record the environment refused. Memory holds one line at a time.
func (o *output) read(ctx context.Context, r io.Reader) error {
	br := bufio.NewReaderSize(r, 64<<10)
	var buf []byte
	for n := int64(1); ; n++ {
		line, err := lineread.Read(br, buf[:0], o.maxLine)
		if errors.Is(err, lineread.ErrTooLong) {
			return fmt.Errorf("stdout line %d: longer than the %d-byte line limit (the manifest's max_line_bytes raises it)", n, o.maxLine)
		} else if err != nil && err != io.EOF {
			return fmt.Errorf("read stdout line %d: %w", n, err)
		}
		if err == io.EOF && len(line) == 0 {
			return nil // the newline before EOF ended the last line
		}
		o.lines++
		if herr := o.handle(ctx, n, line); herr != nil {
			return herr
		}
		if err == io.EOF {
			return nil
		}
		if cap(line) <= 1<<20 {
			buf = line // reuse; a huge line's buffer is let go
		} else {
			buf = nil
		}
	}
}

// handle ingests line n. A blank line is skipped: unlike Faraday, it does
// not end the output.
func (o *output) handle(ctx context.Context, n int64, line []byte) error {
	if len(bytes.TrimSpace(line)) == 0 {
		return nil
	}
	recs, err := scanfleet.ParseDocument(line)
	if err != nil {
		msg := fmt.Sprintf("stdout line %d: %s", n, scanfleet.ErrorMessage(err))
		if !o.skipInvalid {
			return errors.New(msg)
		}
		o.skipped++
		switch {
		case o.skipped <= maxSkipLogs:
			o.env.Log("skipped invalid " + msg)
		case o.skipped == maxSkipLogs+1:
			o.env.Log(fmt.Sprintf("more than %d invalid lines: further ones are counted, not logged", maxSkipLogs))
		}
		return nil
	}
	for _, r := range recs {
		if err := o.env.Emit(ctx, r.Data); err != nil {
			return fmt.Errorf("stdout line %d: emit: %w", n, err)
		}
		o.records++
	}
	return nil
}

// readLogLine reads one line and keeps at most max bytes of it; cut says
// how many bytes were dropped from its end.
func readLogLine(br *bufio.Reader, buf []byte, max int) (line []byte, cut int, err error) {
	for {
		chunk, err := br.ReadSlice('\n')
		if room := max - len(buf); room > 0 {
			buf = append(buf, chunk[:min(room, len(chunk))]...)
			cut += len(chunk) - min(room, len(chunk))
		} else {
			cut += len(chunk)
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if bytes.HasSuffix(chunk, []byte("\n")) {
			// The newline is not content, whether it was kept or cut.
			if cut > 0 {
				cut--
			} else {
				buf = buf[:len(buf)-1]
			}
		}
		return bytes.TrimRight(buf, "\r"), cut, err
	}
}

// logText makes a log line of program output: valid UTF-8, with a note
// when it was cut.
func logText(line []byte, cut int) string {
	s := strings.ToValidUTF8(string(line), "\uFFFD")
	if cut > 0 {
		s += fmt.Sprintf(" … [%d more bytes]", cut)
	}
	return s
}

// tail keeps the last few stderr lines for a failure message.
type tail struct {
	max   int
	lines []string
}

func (t *tail) add(s string) {
	if len(s) > 500 {
		n := 500
		for n > 0 && !utf8.RuneStart(s[n]) {
			n--
		}
		s = s[:n] + "…"
	}
	t.lines = append(t.lines, s)
	if len(t.lines) > t.max {
		t.lines = t.lines[1:]
	}
}

func (t *tail) String() string { return strings.Join(t.lines, "\n") }
