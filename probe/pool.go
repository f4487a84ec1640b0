package probe

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/rand/v2"
	"slices"
	"sync"
	"time"
)

// Target is one endpoint to probe. Key names it (two targets may share an address, as a
// vcluster's Service and its pod do); ServerName is the SNI sent ("" for none).
type Target struct {
	Key, Addr, ServerName string
}

// Result is the last probe of a target.
type Result struct {
	Target Target
	At     time.Time // when the probe started
	// Leaf is what is kept of the served leaf (zero when Err is set), Cert the leaf itself (only
	// with Prober.KeepCerts), ChainLen how many certificates came with it.
	Leaf     Leaf
	Cert     *x509.Certificate
	ChainLen int
	Err      error
}

// Up tells whether the last handshake served a certificate.
func (r Result) Up() bool { return r.Err == nil && r.ChainLen > 0 }

// Leaf is what a result keeps of a served leaf: what its series show and what the fleet judges it
// by. A parsed certificate kept whole costs 3.6 KB (BenchmarkPoolHeld), 36 MB at 10,000 vclusters.
type Leaf struct {
	Serial              string
	Subject, Issuer     pkix.Name // the attributes only, not the raw RDN sequence
	NotBefore, NotAfter time.Time
	AuthorityKeyID      []byte
}

func leafOf(c *x509.Certificate) Leaf {
	return Leaf{Serial: c.SerialNumber.String(), Subject: names(c.Subject), Issuer: names(c.Issuer),
		NotBefore: c.NotBefore, NotAfter: c.NotAfter, AuthorityKeyID: slices.Clone(c.AuthorityKeyId)}
}

// names keeps a name's attributes and drops Names (every attribute again, parsed) and ExtraNames.
func names(n pkix.Name) pkix.Name {
	return pkix.Name{Country: n.Country, Organization: n.Organization, OrganizationalUnit: n.OrganizationalUnit,
		Locality: n.Locality, Province: n.Province, CommonName: n.CommonName}
}

// Defaults, each chosen for the fleet's worst case (thousands of endpoints on one service):
const (
	// DefaultWorkers bounds the handshakes in flight: goroutines, sockets and CPU for the
	// handshakes' signatures stay fixed whatever the number of endpoints.
	DefaultWorkers = 8
	// DefaultTimeout bounds one dial and handshake: a loopback or in-cluster handshake takes
	// milliseconds, so 5 s only ever waits for an endpoint that does not answer.
	DefaultTimeout = 5 * time.Second
	// DefaultInterval: a served certificate changes at a restart, not by the second.
	DefaultInterval = time.Minute
	// DefaultJitter spreads each endpoint's probes by up to this fraction of the interval, so
	// that endpoints added together do not stay in step.
	DefaultJitter = 0.2
)

// Prober probes a set of targets, each at most once per Interval, with Workers handshakes at
// most in flight. It keeps the last result of each target.
type Prober struct {
	Workers  int
	Timeout  time.Duration
	Interval time.Duration
	Jitter   float64 // fraction of Interval; 0 probes exactly every Interval
	// KeepCerts keeps each result's leaf whole (Result.Cert): to check its signature, for a
	// handful of endpoints.
	KeepCerts bool
	// OnResult (nil: none) is called after every probe, on the worker's goroutine.
	OnResult func(Result)
	// handshake is Handshake; tests replace it to count.
	handshake func(ctx context.Context, addr, serverName string, timeout time.Duration) ([]*x509.Certificate, error)

	mu      sync.Mutex
	targets map[string]*slot
	wake    chan struct{}
}

// slot is one target's schedule and last result.
type slot struct {
	target   Target
	next     time.Time // not before
	inFlight bool
	result   Result
	done     bool // result holds a probe
}

func (p *Prober) init() {
	if p.targets == nil {
		p.targets = map[string]*slot{}
		p.wake = make(chan struct{}, 1)
	}
}

// Set replaces the targets. A new target is probed soon (within the jitter), a known one keeps
// its schedule and result, a target gone is forgotten with its result.
func (p *Prober) Set(targets []Target) {
	p.mu.Lock()
	p.init()
	now := time.Now()
	keep := make(map[string]bool, len(targets))
	for _, t := range targets {
		keep[t.Key] = true
		if s, ok := p.targets[t.Key]; ok {
			s.target = t
			continue
		}
		p.targets[t.Key] = &slot{target: t, next: now.Add(p.jitter())}
	}
	for k := range p.targets {
		if !keep[k] {
			delete(p.targets, k)
		}
	}
	p.mu.Unlock()
	p.poke()
}

// Results are the last results, one per target probed at least once.
func (p *Prober) Results() map[string]Result {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]Result, len(p.targets))
	for k, s := range p.targets {
		if s.done {
			out[k] = s.result
		}
	}
	return out
}

func (p *Prober) poke() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

func (p *Prober) jitter() time.Duration {
	if p.Jitter <= 0 {
		return 0
	}
	return time.Duration(rand.Float64() * p.Jitter * float64(p.interval()))
}

func (p *Prober) interval() time.Duration {
	if p.Interval > 0 {
		return p.Interval
	}
	return DefaultInterval
}

// Run probes until ctx ends; it returns after every worker has stopped.
func (p *Prober) Run(ctx context.Context) {
	p.mu.Lock()
	p.init()
	p.mu.Unlock()
	workers, timeout := p.Workers, p.Timeout
	if workers <= 0 {
		workers = DefaultWorkers
	}
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	hs := p.handshake
	if hs == nil {
		hs = Handshake
	}
	// Unbuffered: the scheduler hands a target over only to an idle worker, so no queue of
	// targets builds up beside the pool.
	jobs := make(chan *slot)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for s := range jobs {
				p.probe(ctx, s, hs, timeout)
			}
		})
	}
	defer wg.Wait()
	defer close(jobs)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		wait := p.dispatch(ctx, jobs)
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-p.wake:
		}
	}
}

// dispatch hands every due target to a worker, waiting for one to be free, and returns how long
// to wait until the next target is due.
func (p *Prober) dispatch(ctx context.Context, jobs chan<- *slot) time.Duration {
	p.mu.Lock()
	now := time.Now()
	var due []*slot
	for _, s := range p.targets {
		if !s.inFlight && !s.next.After(now) {
			s.inFlight = true
			due = append(due, s)
		}
	}
	p.mu.Unlock()
	for _, s := range due {
		select {
		case jobs <- s:
		case <-ctx.Done():
			return 0
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	now = time.Now()
	wait := p.interval()
	for _, s := range p.targets {
		if !s.inFlight {
			wait = min(wait, max(s.next.Sub(now), 0))
		}
	}
	return wait
}

func (p *Prober) probe(ctx context.Context, s *slot, hs func(context.Context, string, string, time.Duration) ([]*x509.Certificate, error), timeout time.Duration) {
	p.mu.Lock()
	t := s.target
	p.mu.Unlock()
	start := time.Now()
	chain, err := hs(ctx, t.Addr, t.ServerName, timeout)
	r := Result{Target: t, At: start, Err: err, ChainLen: len(chain)}
	if err == nil && len(chain) > 0 {
		r.Leaf = leafOf(chain[0])
		if p.KeepCerts {
			r.Cert = chain[0]
		}
	}
	p.mu.Lock()
	s.result, s.done, s.inFlight = r, true, false
	// The interval counts from the probe's start: one probe per endpoint per interval, however
	// long the handshake took.
	s.next = start.Add(p.interval() + p.jitter())
	p.mu.Unlock()
	if p.OnResult != nil && ctx.Err() == nil {
		p.OnResult(r)
	}
}
