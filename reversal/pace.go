package reversal

import (
	"context"
	"maps"
	"slices"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/reversald/reversald"
	"github.com/reversald/reversald/internal/backoff"
	"github.com/reversald/reversald/qfpay"
	"github.com/reversald/reversald/store"
)

// Pacer spaces one merchant's gateway calls to QFPay's limits. Every gateway
// call of every step waits for it ((*run).call, nowhere else).
type Pacer interface {
	// Wait blocks until mchid may make one more call within its budget p
	// and reports true, or reports false when no slot comes before ctx ends.
	// A merchant's credential decides its mchid (qfpay.Directory), so mchid
	// alone names the (credential, merchant) budget.
	Wait(ctx context.Context, mchid string, p store.Pace) bool
	// Pause holds mchid's calls back for d (QFPay answered 429, or asked to
	// retry after d).
	Pause(ctx context.Context, mchid string, p store.Pace, d time.Duration)
}

// sharedPacer keeps each merchant's budget in PostgreSQL, so that every
// instance of the group draws from the same one (store.ReserveMany): N
// instances together never exceed it. The reservations of this instance's
// workers are grouped (a reservations batch): one round trip takes the slots
// of every worker that asked while the previous one was under way.
//
// A claim leases the slots its attempts will need (lease): one reservation
// for all the calls of a merchant's claimed attempts, as many as its burst
// has left, which this instance then spends by itself within leaseWindow.
// A call with no leased slot left reserves one as before.
type sharedPacer struct {
	st     *store.Store
	waited func(d time.Duration, ok bool)
	batch  reservations

	mu     sync.Mutex
	leases map[string]*slotLease // by merchant (pace key)
	// paused: when this instance last paused a merchant (a 429), on this
	// process's clock. A lease sent before it is not taken up and a leased
	// slot handed out before it is not spent: the claim that leased them
	// may have run before the pause. Entries older than pauseMemory go.
	paused map[string]time.Time
}

// pauseMemory is how long a pause is remembered to refuse leases sent
// before it: far longer than a claim's statement may take.
const pauseMemory = time.Minute

// slotLease is a merchant's slots leased to this instance. Until ready is
// closed the reservation is under way and only ready may be read.
type slotLease struct {
	ready chan struct{}
	pace  store.Pace // the budget it was granted under: spent only under the same
	from  time.Time  // the first slot, on this process's clock
	until time.Time  // the last moment a slot may be spent
	left  int        // slots not spent
	// revoked: a 429 paused the merchant; what the reservation under way
	// gets is not spent.
	revoked bool
}

// leaseWindow is how long after its first slot a lease may be spent. A slot
// spent late is charged early in the per-minute budget: the window, with
// a call's own lateness, must stay within merchantPace's 1% margin (600 ms
// of a minute), and it is long enough for the query, cancel and confirm of
// an attempt when the gateway answers at once; slots it does not cover are
// reserved one by one as before.
const leaseWindow = 250 * time.Millisecond

func newSharedPacer(st *store.Store, waited func(time.Duration, bool)) *sharedPacer {
	p := &sharedPacer{st: st, waited: waited, leases: make(map[string]*slotLease), paused: make(map[string]time.Time)}
	p.batch.reserve = st.ReserveMany
	return p
}

// slotWant is the slots a claim's attempts of one merchant will want.
type slotWant struct {
	key   string
	pace  store.Pace
	calls int
}

// lease reserves, in the background, the slots of each merchant in wants
// that has no lease under way or with slots left, all queued at once so
// that they share a statement; the calls of those merchants wait for its
// answer (Wait). Leases spent or past are forgotten here, so that the map
// holds only the merchants of the last claims.
func (p *sharedPacer) lease(ctx context.Context, wants []slotWant) {
	now := time.Now()
	var (
		leases []*slotLease
		reqs   []store.Reservation
	)
	p.mu.Lock()
	for k, l := range p.leases {
		if isClosed(l.ready) && (l.left == 0 || now.After(l.until)) {
			delete(p.leases, k)
		}
	}
	for _, w := range wants {
		// A lease's slots may be spent up to leaseWindow late: only where
		// the per-minute limit alone keeps every second within the
		// per-second one with that lateness (store.ReserveMany).
		if w.calls < 2 || p.leases[w.key] != nil || !w.pace.BurstFitsASecond(leaseWindow) {
			continue
		}
		l := &slotLease{ready: make(chan struct{}), pace: w.pace}
		p.leases[w.key] = l
		leases = append(leases, l)
		reqs = append(reqs, store.Reservation{MchID: w.key, Pace: w.pace, MaxWait: 2 * claimLookahead, Calls: w.calls, Window: leaseWindow})
	}
	p.mu.Unlock()
	if len(reqs) == 0 {
		return
	}
	sent := time.Now()
	queued := p.batch.submit(ctx, reqs)
	go func() {
		for i, r := range queued {
			<-r.done
			answered := time.Now()
			p.mu.Lock()
			if l := leases[i]; r.err == nil && r.got.OK && !l.revoked {
				// The window is measured from before the statement was sent
				// (PostgreSQL's now came after), the first slot from when the
				// answer came: neither is later than the truth.
				l.from, l.until, l.left = answered.Add(r.got.Wait), sent.Add(r.got.Wait+leaseWindow), r.got.Calls
			}
			close(leases[i].ready)
			p.mu.Unlock()
		}
	}()
}

// keep records slots leased for mchid by a claim sent at sent and answered
// at answered (their first slot measured from the answer, their window
// from the sending: neither later than the truth). A lease this instance
// still held of mchid is left unspent.
func (p *sharedPacer) keep(mchid string, pace store.Pace, r store.Reserved, sent, answered time.Time) {
	l := &slotLease{ready: make(chan struct{}), pace: pace, from: answered.Add(r.Wait), until: sent.Add(r.Wait + leaseWindow), left: r.Calls}
	close(l.ready)
	p.mu.Lock()
	defer p.mu.Unlock()
	if at, ok := p.paused[mchid]; ok && !at.Before(sent) {
		return // a 429 came after the claim was sent: its lease is given up
	}
	p.leases[mchid] = l
}

// pausedSince reports whether this instance paused mchid at or after t.
func (p *sharedPacer) pausedSince(mchid string, t time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	at, ok := p.paused[mchid]
	return ok && !at.Before(t)
}

// leased spends one of mchid's leased slots: the time to call at, or false
// when this instance holds none (then a slot is reserved as usual). It waits
// for a lease under way, but not past ctx. The slots of a lease need no
// spacing: nobody else calls the merchant in its window (see
// store.ReserveMany), and there are few enough of them that any second
// holds fewer calls than the per-second limit.
func (p *sharedPacer) leased(ctx context.Context, mchid string, pace store.Pace) (time.Time, bool) {
	p.mu.Lock()
	l := p.leases[mchid]
	p.mu.Unlock()
	if l == nil {
		return time.Time{}, false
	}
	select {
	case <-l.ready:
	case <-ctx.Done():
		return time.Time{}, false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if l.pace != pace {
		// Granted under a budget a credential reload has changed since: its
		// slots need not fit the new one (a stricter per-second limit).
		l.left = 0
	}
	if l.left == 0 {
		return time.Time{}, false
	}
	at := time.Now()
	if l.from.After(at) {
		at = l.from
	}
	if at.After(l.until) {
		l.left = 0 // the window has passed: the rest is lost
		return time.Time{}, false
	}
	l.left--
	return at, true
}

func (p *sharedPacer) Wait(ctx context.Context, mchid string, pace store.Pace) bool {
	started := time.Now()
	if at, ok := p.leased(ctx, mchid, pace); ok {
		if d := time.Until(at); d > 0 && !backoff.Sleep(ctx, d) {
			p.waited(time.Since(started), false)
			return false // the slot is spent unused: the budget holds
		}
		if p.pausedSince(mchid, started) {
			p.waited(time.Since(started), false)
			return false // a 429 came while this slot waited: not spent
		}
		p.waited(time.Since(started), true)
		return true
	}
	maxWait := time.Minute
	if dl, ok := ctx.Deadline(); ok {
		maxWait = time.Until(dl)
	}
	got, err := p.batch.take(ctx, store.Reservation{MchID: mchid, Pace: pace, MaxWait: max(maxWait, 0)})
	if err != nil || !got.OK {
		p.waited(time.Since(started), false)
		return false // no slot, or the budget cannot be read: no call
	}
	if got.Wait > 0 && !backoff.Sleep(ctx, got.Wait) {
		p.waited(time.Since(started), false)
		return false // the slot is spent unused: the budget holds
	}
	p.waited(time.Since(started), true)
	return true
}

// leaseSlots keeps, for the attempts a claim got, the slots the claim
// leased for their merchants (store.Claim.Slots, under the cluster-wide
// pace: claimSlots), and leases in one more statement those of merchants
// whose calls draw from another budget or pace (a credential's), with
// shared pacing only. sent is when the claim was sent.
func (e *Executor) leaseSlots(ctx context.Context, got []reversald.Attempt, slots []store.Reserved, sent time.Time) {
	p, ok := e.pacer.(*sharedPacer)
	if !ok || len(got) == 0 {
		return
	}
	answered := time.Now()
	claimed := e.claimSlots()
	kept := make(map[string]bool)
	wants := make(map[string]slotWant, len(got))
	for i, a := range got {
		acct, err := e.gw.Resolve(a.MchID)
		if err != nil {
			continue // no credential: no call
		}
		key, pace := paceKey(a.MchID, acct), e.merchantPace(acct)
		if claimed != nil && key == a.MchID && pace == claimed.Pace {
			// The claim leased this merchant's slots, or its next one is
			// too far for a lease: its calls reserve theirs one by one.
			if i < len(slots) && slots[i].OK && !kept[key] {
				kept[key] = true
				p.keep(key, pace, slots[i], sent, answered)
			}
			continue
		}
		// A claim's lease of another budget or pace than the calls draw
		// from is lost (under-use).
		w := wants[key]
		w.key, w.pace, w.calls = key, pace, w.calls+callsAhead(a)
		wants[key] = w
	}
	p.lease(ctx, slices.Collect(maps.Values(wants)))
}

// claimSlots is the lease a claim asks for (store.Claim.Slots), under the
// cluster-wide pace: nil when those slots could not be spent unspaced.
func (e *Executor) claimSlots() *store.SlotLease {
	pace := e.merchantPace(qfpay.Account{})
	if !pace.BurstFitsASecond(leaseWindow) {
		return nil
	}
	return &store.SlotLease{Pace: pace, MaxWait: 2 * claimLookahead, Window: leaseWindow}
}

// callsAhead is how many calls a claimed attempt's run makes at once for a
// payment still in flight: query, cancel and confirm from the query step. A
// payment found settled makes fewer, and its slots are lost (under-use).
func callsAhead(a reversald.Attempt) int {
	switch {
	case a.Step == reversald.StepQuery:
		return 3
	case a.Step == reversald.StepCancel && !a.CancelPending:
		return 2
	default:
		return 1
	}
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// reservations groups concurrent reservations into few statements, like a
// group commit: a request made while fewer than maxReserveFlushes
// statements are under way starts a flusher, which sends every request
// waiting (one per merchant per statement: a second one for the same
// merchant goes in the next) until none is left. A request waits for its
// answer however its caller's context ends: a slot due now must still be
// taken, and a reservation under way lands either way.
type reservations struct {
	reserve func(context.Context, []store.Reservation) ([]store.Reserved, error)

	mu       sync.Mutex
	pending  []*reservation
	flushers int
}

type reservation struct {
	req  store.Reservation
	got  store.Reserved
	err  error
	done chan struct{}
}

const (
	maxReserveFlushes = 2   // statements under way at once
	maxReserveBatch   = 256 // merchants per statement
)

// take queues req and waits for its answer. ctx is not a deadline for the
// answer (see reservations); a flusher it starts runs on ctx's values only.
func (b *reservations) take(ctx context.Context, req store.Reservation) (store.Reserved, error) {
	r := b.submit(ctx, []store.Reservation{req})[0]
	<-r.done
	return r.got, r.err
}

// submit queues reqs together (they go in the same statements when they
// can) and returns them; each one's done closes when its answer is in.
func (b *reservations) submit(ctx context.Context, reqs []store.Reservation) []*reservation {
	rs := make([]*reservation, len(reqs))
	b.mu.Lock()
	defer b.mu.Unlock()
	for i, req := range reqs {
		rs[i] = &reservation{req: req, done: make(chan struct{})}
		b.pending = append(b.pending, rs[i])
	}
	if len(rs) > 0 && b.flushers < maxReserveFlushes {
		b.flushers++
		go b.flush(context.WithoutCancel(ctx))
	}
	return rs
}

// flush sends batches until no request waits.
func (b *reservations) flush(ctx context.Context) {
	for {
		b.mu.Lock()
		batch := b.next()
		if len(batch) == 0 {
			b.flushers--
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
		reqs := make([]store.Reservation, len(batch))
		for i, r := range batch {
			reqs[i] = r.req
		}
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		got, err := b.reserve(rctx, reqs)
		cancel()
		for i, r := range batch {
			if err != nil {
				r.err = err
			} else {
				r.got = got[i]
			}
			close(r.done)
		}
	}
}

// next takes the oldest waiting requests, at most one per merchant, off
// pending. b.mu is held.
func (b *reservations) next() []*reservation {
	var batch, rest []*reservation
	seen := make(map[string]bool, len(b.pending))
	for _, r := range b.pending {
		if len(batch) < maxReserveBatch && !seen[r.req.MchID] {
			seen[r.req.MchID] = true
			batch = append(batch, r)
		} else {
			rest = append(rest, r)
		}
	}
	b.pending = rest
	return batch
}

func (p *sharedPacer) Pause(ctx context.Context, mchid string, pace store.Pace, d time.Duration) {
	// This instance's leased slots of mchid are given up at once (another
	// instance's end with their window, within leaseWindow).
	p.mu.Lock()
	if l := p.leases[mchid]; l != nil {
		l.left, l.revoked = 0, true
	}
	now := time.Now()
	for k, at := range p.paused {
		if now.Sub(at) > pauseMemory {
			delete(p.paused, k)
		}
	}
	p.paused[mchid] = now
	p.mu.Unlock()
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_ = p.st.Pause(pctx, mchid, pace, d) // best effort: the backoff of this attempt holds anyway
}

// localPacer is a token bucket per merchant in this process: for one
// instance, or a group that divides the budget by hand.
type localPacer struct {
	waited func(d time.Duration, ok bool)

	mu       sync.Mutex
	limiters map[string]localBucket
	paused   map[string]time.Time
}

type localBucket struct {
	pace store.Pace
	l    *rate.Limiter
}

func newLocalPacer(waited func(time.Duration, bool)) *localPacer {
	return &localPacer{waited: waited, limiters: make(map[string]localBucket), paused: make(map[string]time.Time)}
}

func (p *localPacer) Wait(ctx context.Context, mchid string, pace store.Pace) bool {
	started := time.Now()
	p.mu.Lock()
	b, ok := p.limiters[mchid]
	if !ok || b.pace != pace { // new, or its budget changed with a credentials reload
		b = localBucket{pace: pace, l: rate.NewLimiter(rate.Every(pace.Interval), max(pace.Burst, 1))}
		p.limiters[mchid] = b
	}
	l := b.l
	until := p.paused[mchid]
	p.mu.Unlock()
	if d := time.Until(until); d > 0 && !backoff.Sleep(ctx, d) {
		p.waited(time.Since(started), false)
		return false
	}
	var got bool
	if ctx.Err() != nil {
		got = l.Allow()
	} else {
		got = l.Wait(ctx) == nil
	}
	p.waited(time.Since(started), got)
	return got
}

func (p *localPacer) Pause(_ context.Context, mchid string, _ store.Pace, d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if until := time.Now().Add(d); until.After(p.paused[mchid]) {
		p.paused[mchid] = until
	}
}

// unpaced lets every call through (pacing switched off).
type unpaced struct{}

func (unpaced) Wait(context.Context, string, store.Pace) bool            { return true }
func (unpaced) Pause(context.Context, string, store.Pace, time.Duration) {}

// merchantPace is one merchant's budget that keeps within both of QFPay's
// limits: at most perMinute calls in any 60 s window, with bursts of up to
// burst calls, and at most perSecond a second. Holding the minute limit over
// any window with bursts costs burst calls of the sustained rate: the calls
// are spaced 60s/(perMinute-burst) on average, with a 1% margin so that calls
// bunched by jitter still fit (600 ms of a minute's window). A call leaves
// after its slot by however long the process takes to send it (scheduling,
// the connection, a busy machine), so the per-second spacing has a 20%
// margin: a call may leave up to 200 ms of a second's window late, where 1%
// left 10 ms and a loaded machine met QFPay's 429. It costs nothing that
// binds: at QFPay's limits (100/s, 400/min) the per-second spacing only
// spaces a burst (16 calls in 190 ms instead of 160).
func merchantPace(perMinute, perSecond float64, burst int) store.Pace {
	interval := time.Duration(float64(time.Minute) / max(perMinute-float64(burst), 1) * 1.01)
	gap := time.Duration(0)
	if perSecond > 0 {
		gap = time.Duration(float64(time.Second) / perSecond * 1.2)
	}
	return store.Pace{Interval: max(interval, gap), Burst: max(burst, 1), MinGap: gap}
}
