// Package lineread reads lines of bounded length: ingest bodies and the
// output of external executors, where a line is one record and whoever
// wrote it may be hostile or broken.
package lineread

import (
	"bufio"
	"bytes"
	"errors"
)

// ErrTooLong says a line passed the bound given to Read.
var ErrTooLong = errors.New("line too long")

// Read appends one line, without its line ending, to buf; it stops with
// ErrTooLong as soon as the line passes max bytes, so memory stays bounded
// whatever the input. At the end of the input it returns the last line,
// if any, with io.EOF.
func Read(br *bufio.Reader, buf []byte, max int) ([]byte, error) {
	for {
		chunk, err := br.ReadSlice('\n')
		buf = append(buf, chunk...)
		if len(bytes.TrimRight(buf, "\r\n")) > max {
			return buf, ErrTooLong
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		return bytes.TrimRight(buf, "\r\n"), err
	}
}
