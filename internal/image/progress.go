package image

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// reporter shows build progress to a person: on a terminal, one line per
// finished step and a live bar for the running one; elsewhere (CI, logs,
// the daemon) plain lines with elapsed times and an occasional heartbeat.
//
// Steps carry weights so that the bar's percentage is an estimate of the
// whole build, not of one step. All methods are safe for concurrent use.
type reporter struct {
	w       io.Writer
	tty     bool
	fd      int
	weights []float64
	titles  []string

	mu       sync.Mutex
	step     int // 0-based index of the running step, -1 when none
	frac     float64
	detail   string
	started  time.Time
	lastBeat time.Time
	stop     chan struct{}
	done     chan struct{}
	closed   sync.Once
}

// heartbeat is how often the plain reporter repeats the progress of a
// long step, so that CI logs show it is alive.
const heartbeat = 20 * time.Second

func newReporter(w io.Writer, titles []string, weights []float64) *reporter {
	if w == nil {
		w = io.Discard
	}
	r := &reporter{w: w, titles: titles, weights: weights, step: -1}
	if f, ok := w.(interface{ Fd() uintptr }); ok {
		if _, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS); err == nil {
			r.tty, r.fd = true, int(f.Fd())
		}
	}
	if r.tty {
		r.stop, r.done = make(chan struct{}), make(chan struct{})
		go r.redrawLoop()
	}
	return r
}

// printf writes a permanent line.
func (r *reporter) printf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.clearLocked()
	fmt.Fprintf(r.w, format+"\n", args...)
	r.drawLocked()
}

// start begins step i (0-based).
func (r *reporter) start(i int, detail string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.step, r.frac, r.detail = i, 0, ""
	r.started, r.lastBeat = time.Now(), time.Now()
	r.clearLocked()
	if detail != "" {
		detail = " (" + detail + ")"
	}
	fmt.Fprintf(r.w, "%s %s%s ...\n", r.prefixLocked(), r.titles[i], detail)
	r.drawLocked()
}

// update sets the running step's completed fraction, in [0, 1], and a short
// description of what it is doing.
func (r *reporter) update(frac float64, detail string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.step < 0 {
		return
	}
	r.frac = min(max(frac, r.frac), 1) // never go backwards
	if detail != "" {
		r.detail = detail
	}
	if !r.tty && time.Since(r.lastBeat) >= heartbeat {
		r.lastBeat = time.Now()
		fmt.Fprintf(r.w, "%s   %3.0f%%  %s  %s\n", r.prefixLocked(), 100*r.overallLocked(), elapsed(r.started), r.detail)
	}
}

// finish ends the running step.
func (r *reporter) finish(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.step < 0 {
		return
	}
	r.clearLocked()
	if err != nil {
		fmt.Fprintf(r.w, "%s %s failed after %s\n", r.prefixLocked(), r.titles[r.step], elapsed(r.started))
	} else {
		fmt.Fprintf(r.w, "%s %s done in %s\n", r.prefixLocked(), r.titles[r.step], elapsed(r.started))
	}
	r.step = -1
}

// close stops the live bar. It may be called more than once; other methods
// must not be called after it.
func (r *reporter) close() {
	r.closed.Do(func() {
		if r.tty {
			close(r.stop)
			<-r.done
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		r.clearLocked()
	})
}

func (r *reporter) prefixLocked() string {
	return fmt.Sprintf("[%d/%d]", r.step+1, len(r.titles))
}

func (r *reporter) overallLocked() float64 {
	var total, done float64
	for i, w := range r.weights {
		total += w
		if i < r.step {
			done += w
		}
	}
	if r.step >= 0 {
		done += r.weights[r.step] * r.frac
	}
	return done / total
}

func (r *reporter) redrawLoop() {
	defer close(r.done)
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
			r.mu.Lock()
			r.drawLocked()
			r.mu.Unlock()
		}
	}
}

// drawLocked paints the bar on the terminal's last line.
func (r *reporter) drawLocked() {
	if !r.tty || r.step < 0 {
		return
	}
	width := 80
	if ws, err := unix.IoctlGetWinsize(r.fd, unix.TIOCGWINSZ); err == nil && ws.Col > 0 {
		width = int(ws.Col)
	}
	const barWidth = 24
	pct := r.overallLocked()
	filled := int(pct * barWidth)
	line := fmt.Sprintf("%s [%s%s] %3.0f%% %s %s", r.prefixLocked(),
		strings.Repeat("=", filled), strings.Repeat(" ", barWidth-filled),
		100*pct, elapsed(r.started), r.detail)
	if len(line) > width-1 {
		line = line[:width-1]
	}
	fmt.Fprintf(r.w, "\r\x1b[K%s", line)
}

func (r *reporter) clearLocked() {
	if r.tty {
		fmt.Fprint(r.w, "\r\x1b[K")
	}
}

func elapsed(since time.Time) string {
	d := time.Since(since)
	if d < time.Minute {
		return fmt.Sprintf("%.1fs", d.Seconds())
	}
	return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
}
