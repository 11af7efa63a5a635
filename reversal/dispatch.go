package reversal

import (
	"context"
	"sync"
	"time"

	"github.com/reversald/reversald"
	"github.com/reversald/reversald/store"
)

// Notify hands newly recorded attempts to this executor so they start at
// once. It never blocks: if the hand-off queue is full, polling finds them.
func (e *Executor) Notify(ids []int64) {
	if len(ids) == 0 {
		return
	}
	select {
	case e.handed <- ids:
	default:
	}
}

// Run claims and drives attempts until ctx is cancelled, then lets in-flight
// steps finish within StopTimeout, releases what it still holds, and returns
// once every worker has exited. A cancelled ctx is not an error.
func (e *Executor) Run(ctx context.Context) error {
	// Workers run on a context that outlives ctx by StopTimeout, so a step
	// under way when the stop comes can finish and be written.
	workCtx, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	var wg sync.WaitGroup
	stopping := make(chan struct{})
	// Claimed attempts wait in ready for a worker: up to ahead of them are
	// claimed before any worker is free, so that a worker that finishes
	// starts its next attempt at once instead of waiting for a claim's round
	// trip (and its batching).
	ready := make(chan reversald.Attempt, e.ahead())
	for range e.cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.work(workCtx, stopping, ready)
		}()
	}

	// queue holds attempts handed over by intake, claimed by id (a primary
	// key lookup) ahead of polling, which has to walk the due index.
	var queue []int64
	poll := time.NewTimer(0)
	defer poll.Stop()
	for {
		if ctx.Err() != nil {
			e.stop(ctx, stopping, ready, &wg, cancelWork)
			return nil
		}
		polled := false
		if len(queue) == 0 {
			select {
			case <-ctx.Done():
				continue
			case ids := <-e.handed:
				queue = append(queue, ids...)
			case <-poll.C:
				polled = true
			}
		} else {
			// Polling still runs on its schedule, so that re-checks and
			// other instances' leftovers are not starved by new work.
			select {
			case <-poll.C:
				polled = true
			default:
			}
		}
		// Take whatever else was handed over meanwhile, up to a bound; what
		// does not fit is due anyway and polling finds it.
		for more := true; more && len(queue) < maxQueued; {
			select {
			case ids := <-e.handed:
				queue = append(queue, ids...)
			default:
				more = false
			}
		}
		if len(queue) > 0 {
			// Ids that are not claimed were taken by another instance, are
			// not due, or are final already: polling covers them.
			n, _, err := e.dispatch(ctx, ready, queue)
			if err != nil {
				// The database is failing: leave the queue to polling and
				// wait a poll interval rather than retry in a tight loop.
				e.logClaimError(ctx, err)
				queue = queue[:0]
				poll.Reset(e.cfg.PollInterval)
				continue
			}
			queue = queue[n:]
		}
		if polled {
			_, full, err := e.dispatch(ctx, ready, nil)
			e.logClaimError(ctx, err)
			// A full claim means more may be due: look again at once.
			if full {
				poll.Reset(0)
			} else {
				poll.Reset(e.cfg.PollInterval)
			}
		}
	}
}

func (e *Executor) logClaimError(ctx context.Context, err error) {
	if err != nil && ctx.Err() == nil {
		e.cfg.Logger.Error("claim attempts", "error", err)
	}
}

// maxQueued bounds the hand-off queue.
const maxQueued = 10_000

// stop hands back the attempts claimed ahead that no worker started, lets
// in-flight steps finish within StopTimeout, then cancels them, and returns
// when every worker has exited.
func (e *Executor) stop(ctx context.Context, stopping chan struct{}, ready chan reversald.Attempt, wg *sync.WaitGroup, cancelWork context.CancelFunc) {
	close(stopping)
	// Hand back what waits in ready now, not when a worker frees up: every
	// worker may be in a slow call until the stop timeout, and the process
	// may exit then, leaving these leased until their leases run out. A
	// worker free meanwhile hands back what it takes too (work). Nothing
	// sends to ready any more (dispatch runs on this goroutine), so the
	// loop ends: at most ahead attempts are in it.
	var back sync.WaitGroup
	for more := true; more; {
		select {
		case a := <-ready:
			back.Add(1)
			go func() {
				defer back.Done()
				e.unclaim(ctx, a)
				e.release()
			}()
		default:
			more = false
		}
	}
	close(ready)
	back.Wait()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(e.cfg.StopTimeout):
		e.cfg.Logger.Warn("executor stop timeout: cancelling in-flight steps", "timeout", e.cfg.StopTimeout)
		cancelWork()
		<-done
	}
}

// work is one worker: it drives the attempts handed to it until ready is
// closed. An attempt it has not started is handed back instead (unclaim)
// once the stop has begun, or when it waited too long for a worker (every
// worker busy with slow calls or paced merchants): it is claimed again,
// here or by an instance with a free worker, with a whole lease and a fresh
// look at its merchant's budget. An attempt can go round claim and hand-back
// while every worker stays busy; it makes no gateway call meanwhile, and
// its deadline is checked when a worker drives it.
func (e *Executor) work(ctx context.Context, stopping <-chan struct{}, ready <-chan reversald.Attempt) {
	for a := range ready {
		select {
		case <-stopping:
			e.unclaim(ctx, a)
		default:
			if claimedAt := a.LeaseExpiresAt.Add(-e.cfg.Lease); e.cfg.Now().Sub(claimedAt) > e.maxAheadWait() {
				e.unclaim(ctx, a)
			} else {
				e.drive(ctx, stopping, a)
			}
		}
		e.release()
	}
}

// maxAheadWait is how long an attempt claimed ahead may wait for a worker:
// the claim's look-ahead at a merchant's budget (a second), and never more
// than half the lease, so that a worker always starts with most of it.
func (e *Executor) maxAheadWait() time.Duration { return min(claimLookahead, e.cfg.Lease/2) }

// unclaim hands back an attempt claimed ahead that no worker started: it is
// written as it was claimed, with its lease released and due now, so that
// any instance may claim it at once rather than after the lease runs out.
// Fenced by its token like any write.
func (e *Executor) unclaim(ctx context.Context, a reversald.Attempt) {
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer cancel()
	// Due now, on the database's clock: the claim moved its next run to the
	// lease's end (see store.Claim).
	now := e.cfg.Now()
	a.NextRunAt = now
	if _, _, err := e.steps.do(wctx, store.Step{Attempt: a, Lease: e.cfg.Lease, Now: now}); err != nil {
		e.cfg.Logger.Warn("hand back an attempt claimed ahead; its lease runs out instead", "attempt", a.ID, "error", err)
	}
}

// ahead is how many attempts may be claimed beyond the workers: a quarter of
// them, at least one. Their leases run while they wait, for about the time a
// quarter of the workers take to finish an attempt each.
func (e *Executor) ahead() int { return claimAhead(e.cfg.Workers) }

func claimAhead(workers int) int { return max(1, workers/4) }

// dispatch claims attempts for the free places (from ids when given, else
// the due ones) and hands them to the workers through ready. It returns how
// many ids it used up (tried) and whether it filled every free place.
func (e *Executor) dispatch(ctx context.Context, ready chan<- reversald.Attempt, ids []int64) (int, bool, error) {
	free := e.waitSlots(ctx, len(ids))
	if free == 0 {
		return 0, true, nil
	}
	limit := free
	if ids != nil {
		limit = min(free, len(ids))
		ids = ids[:limit]
	}
	start := time.Now()
	claimedAt := e.cfg.Now()
	got, slots, err := e.store.ClaimSlots(ctx, e.claim(limit, ids))
	if err != nil {
		return 0, false, err
	}
	// The lease runs on PostgreSQL's clock; this process measures what is
	// left of it on its own, from before it asked: never longer than the
	// truth, whatever the two clocks say.
	for i := range got {
		got[i].LeaseExpiresAt = claimedAt.Add(e.cfg.Lease)
	}
	e.cfg.Hooks.Claimed(len(got), time.Since(start))
	e.leaseSlots(ctx, got, slots, start)
	for _, a := range got {
		// A place was free for each: ready has room, or an idle worker
		// takes it at once.
		e.slots <- struct{}{}
		ready <- a
	}
	return limit, len(got) == free, nil
}

// waitSlots returns the number of free places: an attempt is held from its
// claim until its worker is done, and there are Workers plus ahead places.
// When few are free, it waits a little for half of ahead to free up (or as
// many as there are queued attempts), so that a claim fetches a batch rather
// than one row per round trip while the attempts claimed ahead keep the
// workers busy.
func (e *Executor) waitSlots(ctx context.Context, queued int) int {
	want := max(1, e.ahead()/2)
	if queued > 0 {
		want = max(1, min(want, queued))
	}
	free := cap(e.slots) - len(e.slots)
	if free >= want {
		return free
	}
	timer := time.NewTimer(5 * time.Millisecond)
	defer timer.Stop()
	for free < want {
		select {
		case <-e.freed:
		case <-timer.C:
			return cap(e.slots) - len(e.slots)
		case <-ctx.Done():
			return 0
		}
		free = cap(e.slots) - len(e.slots)
	}
	return free
}

// release frees a place and tells a waiting dispatcher.
func (e *Executor) release() {
	<-e.slots
	select {
	case e.freed <- struct{}{}:
	default:
	}
}

// claimLookahead is how far ahead a merchant's next shared gateway slot may
// be for its attempts to be claimed: a merchant with no budget now gets no
// worker (no claiming and handing back).
const claimLookahead = time.Second

// claim is what dispatch asks the store for.
func (e *Executor) claim(limit int, ids []int64) store.Claim {
	c := store.Claim{Owner: e.cfg.Owner, Lease: e.cfg.Lease, Limit: limit, IDs: ids}
	if e.cfg.SharedPacing && e.cfg.MerchantRate > 0 {
		// A merchant gets at most the attempts whose calls fit its look-ahead
		// per claim, so one with a backlog never holds every worker.
		pace := merchantPace(e.cfg.MerchantRate, e.cfg.MerchantRatePerSec, e.cfg.MerchantBurst)
		c.Paced, c.Lookahead, c.PerMerchant = true, claimLookahead, max(1, int(claimLookahead/pace.Interval)/3, pace.Burst/3)
		c.Slots = e.claimSlots()
	}
	return c
}
