package lineread_test

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/scanfleet/scanfleet/internal/lineread"
)

func TestRead(t *testing.T) {
	// A reader buffer smaller than the lines, so that lines come in chunks.
	br := bufio.NewReaderSize(strings.NewReader("first\r\n"+strings.Repeat("x", 40)+"\nlast"), 16)
	var got []string
	for {
		line, err := lineread.Read(br, nil, 40)
		if err != nil && !errors.Is(err, io.EOF) {
			t.Fatal(err)
		}
		got = append(got, string(line))
		if err != nil {
			break
		}
	}
	want := []string{"first", strings.Repeat("x", 40), "last"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("got %q, want %q", got, want)
	}

	br = bufio.NewReaderSize(strings.NewReader(strings.Repeat("y", 1000)+"\n"), 16)
	line, err := lineread.Read(br, nil, 40)
	if !errors.Is(err, lineread.ErrTooLong) {
		t.Fatalf("a 1000-byte line under a 40-byte bound: err %v", err)
	}
	if len(line) > 40+16 {
		t.Fatalf("read %d bytes of a line past the bound: memory is not bounded", len(line))
	}
}
