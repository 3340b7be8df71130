package contacts

import (
	"errors"
	"sync/atomic"
)

// pipeBatch is how many rows travel together between the two goroutines.
const pipeBatch = 512

// errConsumerFailed stops a producer once the consumer has failed.
var errConsumerFailed = errors.New("consumer failed")

// pipeRows runs produce and consume in two goroutines, handing rows over in
// batches, so that reading (CSV and cleaning, or the store's cursor) and
// writing (the store, or the index) overlap on two cores. consume sees
// rows in order; its first error stops both and is returned.
func pipeRows(produce func(put func(*row) error) error, consume func(*row) error) error {
	full := make(chan []row, 4)
	free := make(chan []row, 6)
	for range cap(free) {
		free <- make([]row, 0, pipeBatch)
	}
	var failed atomic.Bool
	done := make(chan error, 1)
	go func() { done <- drain(full, free, &failed, consume) }()
	batch := <-free
	perr := produce(func(r *row) error {
		if failed.Load() {
			return errConsumerFailed
		}
		batch = append(batch, *r)
		if len(batch) == pipeBatch {
			full <- batch
			batch = <-free
		}
		return nil
	})
	if perr == nil && len(batch) > 0 {
		full <- batch
	}
	close(full)
	if cerr := <-done; cerr != nil {
		return cerr
	}
	return perr
}

// drain consumes every batch, and after a failure only recycles them.
// The goroutine ends when full is closed.
func drain(full <-chan []row, free chan<- []row, failed *atomic.Bool, consume func(*row) error) error {
	var err error
	for batch := range full {
		for i := 0; i < len(batch) && err == nil; i++ {
			if err = consume(&batch[i]); err != nil {
				failed.Store(true)
			}
		}
		free <- batch[:0]
	}
	return err
}
