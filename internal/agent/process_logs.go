package agent

import (
	"encoding/base64"
	"slices"
	"sync"
	"unicode/utf8"

	"github.com/sbx-dev/sbx/api"
)

// logBuffer keeps the output of a background process: per stream at most
// limit bytes, the oldest dropped first. Chunks carry a sequence number
// across both streams, so readers get stdout and stderr in the order they
// were read. Bytes are never changed once written, so readers may hold on
// to slices of them.
type logBuffer struct {
	mu      sync.Mutex
	limit   int
	chunks  [2][]logChunk
	size    [2]int   // bytes retained
	total   [2]int64 // bytes ever written
	seq     uint64
	ended   bool
	exit    api.ProcessExitEvent
	changed chan struct{} // closed and replaced on every change
}

type logChunk struct {
	seq  uint64
	off  int64 // offset of data[0] in its stream
	data []byte
}

func newLogBuffer(limit int) *logBuffer {
	return &logBuffer{limit: limit, changed: make(chan struct{})}
}

// write is the outputSink side: the pumps append what they read.
func (b *logBuffer) write(stream int, p []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	c := logChunk{seq: b.seq, off: b.total[stream], data: slices.Clone(p)}
	b.seq++
	b.total[stream] += int64(len(p))
	b.size[stream] += len(p)
	b.chunks[stream] = append(b.chunks[stream], c)
	for b.size[stream] > b.limit {
		first := &b.chunks[stream][0]
		excess := b.size[stream] - b.limit
		if len(first.data) <= excess {
			b.size[stream] -= len(first.data)
			b.chunks[stream][0] = logChunk{}
			b.chunks[stream] = b.chunks[stream][1:]
			continue
		}
		first.data = first.data[excess:]
		first.off += int64(excess)
		b.size[stream] -= excess
	}
	b.notifyLocked()
}

// detach: a process's log keeps what comes after the process ended too.
func (b *logBuffer) detach() {}

func (b *logBuffer) notifyLocked() {
	close(b.changed)
	b.changed = make(chan struct{})
}

// end records how the process ended; readers following the log finish.
func (b *logBuffer) end(e api.ProcessExitEvent) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.ended, b.exit = true, e
	b.notifyLocked()
}

// logItem is output or a note of dropped bytes.
type logItem struct {
	stream  int
	data    []byte
	dropped int64
}

// logCursor is how far a reader has got in each stream.
type logCursor struct{ pos [2]int64 }

// next returns what cur has not seen yet, advancing it, whether the
// process has ended (after what is returned) and a channel closed on the
// next change.
func (b *logBuffer) next(cur *logCursor) (items []logItem, ended bool, exit api.ProcessExitEvent, changed <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var idx [2]int
	for s := range 2 {
		if start := b.total[s] - int64(b.size[s]); cur.pos[s] < start {
			items = append(items, logItem{stream: s, dropped: start - cur.pos[s]})
			cur.pos[s] = start
		}
		for idx[s] < len(b.chunks[s]) {
			c := b.chunks[s][idx[s]]
			if c.off+int64(len(c.data)) > cur.pos[s] {
				break
			}
			idx[s]++
		}
	}
	for {
		s := -1
		for i := range 2 {
			if idx[i] < len(b.chunks[i]) && (s < 0 || b.chunks[i][idx[i]].seq < b.chunks[s][idx[s]].seq) {
				s = i
			}
		}
		if s < 0 {
			break
		}
		c := b.chunks[s][idx[s]]
		idx[s]++
		data := c.data[cur.pos[s]-c.off:]
		cur.pos[s] = c.off + int64(len(c.data))
		items = append(items, logItem{stream: s, data: data})
	}
	return items, b.ended, b.exit, b.changed
}

// snapshot renders the retained logs.
func (b *logBuffer) snapshot() api.ProcessLogs {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out [2][]byte
	for s := range 2 {
		buf := make([]byte, 0, b.size[s])
		for _, c := range b.chunks[s] {
			buf = append(buf, c.data...)
		}
		out[s] = buf
	}
	l := api.ProcessLogs{
		StdoutDroppedBytes: b.total[stdout] - int64(b.size[stdout]),
		StderrDroppedBytes: b.total[stderr] - int64(b.size[stderr]),
	}
	l.Stdout, l.StdoutBase64 = textOrBase64(out[stdout])
	l.Stderr, l.StderrBase64 = textOrBase64(out[stderr])
	return l
}

func textOrBase64(p []byte) (string, bool) {
	if utf8.Valid(p) {
		return string(p), false
	}
	return base64.StdEncoding.EncodeToString(p), true
}
