package network

import "sync"

// janitor runs the slow part of releasing sandboxes on a goroutine of its
// own, in batches: what piles up while one batch is cleaned is cleaned
// together next, with one walk of the conntrack table.
type janitor struct {
	mu      sync.Mutex
	cond    *sync.Cond
	queue   []record
	busy    int // records taken but not done
	stopped bool
	done    chan struct{}
}

// start runs clean on batches until stop.
func (j *janitor) start(clean func([]record)) {
	j.cond = sync.NewCond(&j.mu)
	j.done = make(chan struct{})
	go func() {
		defer close(j.done)
		j.mu.Lock()
		for {
			for len(j.queue) == 0 && !j.stopped {
				j.cond.Wait()
			}
			if len(j.queue) == 0 {
				j.mu.Unlock()
				return
			}
			batch := j.queue
			j.queue, j.busy = nil, len(batch)
			j.mu.Unlock()
			clean(batch)
			j.mu.Lock()
			j.busy = 0
			j.cond.Broadcast()
		}
	}()
}

func (j *janitor) add(r record) {
	j.mu.Lock()
	j.queue = append(j.queue, r)
	j.mu.Unlock()
	j.cond.Broadcast()
}

// wait blocks until everything added so far is cleaned.
func (j *janitor) wait() {
	j.mu.Lock()
	for len(j.queue) > 0 || j.busy > 0 {
		j.cond.Wait()
	}
	j.mu.Unlock()
}

// stop cleans what is queued and ends the goroutine.
func (j *janitor) stop() {
	if j.done == nil {
		return
	}
	j.mu.Lock()
	j.stopped = true
	j.mu.Unlock()
	j.cond.Broadcast()
	<-j.done
}
