package cli

import (
	"fmt"
	"io"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// progressBar draws done/total, rate and ETA on one line of a terminal,
// or prints a line every few seconds elsewhere (CI logs, pipes).
type progressBar struct {
	mu       sync.Mutex
	w        io.Writer
	tty      bool
	start    time.Time
	last     time.Time
	lastLine string
	drawn    bool
}

func newProgressBar(w io.Writer) *progressBar {
	return &progressBar{w: w, tty: isTerminal(w), start: time.Now()}
}

// update shows the state; it draws at most ten times a second.
func (p *progressBar) update(status string, done, total int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	every := 100 * time.Millisecond
	if !p.tty {
		every = 5 * time.Second
	}
	if now.Sub(p.last) < every && done < total {
		return
	}
	p.last = now
	line := renderProgress(status, done, total, now.Sub(p.start))
	if line == p.lastLine {
		return
	}
	p.lastLine = line
	if p.tty {
		fmt.Fprintf(p.w, "\r\033[K%s", line)
		p.drawn = true
	} else {
		fmt.Fprintln(p.w, line)
	}
}

// log prints a line above the bar.
func (p *progressBar) log(line string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty && p.drawn {
		fmt.Fprintf(p.w, "\r\033[K%s\n%s", line, p.lastLine)
		return
	}
	fmt.Fprintln(p.w, line)
}

// done ends the bar's line.
func (p *progressBar) done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty && p.drawn {
		fmt.Fprintln(p.w)
		p.drawn = false
	}
}

// renderProgress is one line: "[#####-----] 1234/65535  2.0%  12.3k/s  ETA 4s".
func renderProgress(status string, done, total int64, elapsed time.Duration) string {
	if total <= 0 {
		return fmt.Sprintf("%s  %s", status, elapsed.Round(time.Second))
	}
	const width = 30
	frac := min(float64(done)/float64(total), 1)
	n := int(frac * width)
	bar := strings.Repeat("#", n) + strings.Repeat("-", width-n)
	rate := 0.0
	if s := elapsed.Seconds(); s > 0 {
		rate = float64(done) / s
	}
	eta := "?"
	if rate > 0 && done < total {
		eta = (time.Duration(float64(total-done)/rate*float64(time.Second)) + time.Second/2).Truncate(time.Second).String()
	} else if done >= total {
		eta = "0s"
	}
	return fmt.Sprintf("[%s] %d/%d %5.1f%%  %s/s  ETA %s  %s", bar, done, total, 100*frac, humanRate(rate), eta, status)
}

func humanRate(r float64) string {
	switch {
	case r >= 1e6:
		return fmt.Sprintf("%.1fM", r/1e6)
	case r >= 1e3:
		return fmt.Sprintf("%.1fk", r/1e3)
	default:
		return fmt.Sprintf("%.0f", r)
	}
}

func parseAddr(s string) (netip.Addr, error) { return netip.ParseAddr(s) }
