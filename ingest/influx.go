package ingest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	influxdb2 "github.com/influxdata/influxdb-client-go/v2"
	influxhttp "github.com/influxdata/influxdb-client-go/v2/api/http"
	"github.com/rs/zerolog"

	"github.com/gridbell/gridbell/internal/event"
	"github.com/gridbell/gridbell/internal/logging"
	"github.com/gridbell/gridbell/internal/metrics"
)

// Queue bounds of the sink. A sealed batch waits in memory while the spool
// holds fewer than memBatches; beyond that it waits on disk. The batch being
// filled may grow to maxOpenBatches×BatchSize lines while the flusher is busy
// writing to disk; past that, readings are dropped and counted.
const (
	memBatches     = 8
	maxOpenBatches = 16
	// influxTimeout is Telegraf's influxdb_v2 timeout: a 5,000-line batch
	// that creates new series on a busy influxd may take over 10 s, and one
	// given up on is sent again, whole.
	influxTimeout  = 30 * time.Second
	influxRetryMax = 30 * time.Second
	// influxSenders is the number of batches written at once: while one
	// waits for influxd's WAL fsync, the next is on its way.
	influxSenders = 2
)

// InfluxSink copies readings to InfluxDB (docs/interfaces.md §1) as measurement
// "reading", tags meter and area, fields kwh, voltage, current, power_kw and
// balance where present, millisecond timestamps. Line protocol cannot carry
// an empty tag value, so a reading of an unknown meter has no area tag.
//
// Write only appends to a buffer under a mutex: a slow or dead InfluxDB never
// slows the notification path. A flusher seals the buffer into batches of
// BatchSize (or every FlushEvery) and queues them, in memory and then on
// disk under <dataDir>/spool up to SpoolMaxSize; a sender writes them oldest
// first through the blocking write API with gzip, retrying each batch until
// InfluxDB takes it. A batch leaves the queue only once written, so every
// reading is written, and written once: a retried batch may repeat points
// InfluxDB already took, but a point with the same series and timestamp
// replaces the old one, which makes retries idempotent. Readings past the
// spool cap are dropped, counted and logged (throttled).
type InfluxSink struct {
	cfg   InfluxConfig
	dir   Directory
	log   zerolog.Logger
	write func(ctx context.Context, batch string) error
	close func() // the client's idle connections
	spool *spool

	mu       sync.Mutex // guards buf, lines and reserved
	buf      []byte     // line protocol being filled
	lines    int
	reserved int           // readings waitRoom let through, not yet added
	full     chan struct{} // cap 1: buf reached BatchSize

	failing atomic.Bool // the last write failed: waitRoom does not wait, batches spool to disk
	roomMu  sync.Mutex
	roomCh  chan struct{} // closed, and replaced, when a batch leaves the queue

	written, dropped, errors metrics.Counter
	spoolBytes               metrics.Gauge
	dropThr, errThr          logging.Throttle
}

// NewInflux returns the sink, or nil, nil when cfg.URL is empty (the sink is
// off, and the log says so once). Run must run for anything to be written.
func NewInflux(cfg InfluxConfig, dataDir string, dir Directory, log zerolog.Logger) (*InfluxSink, error) {
	if cfg.URL == "" {
		log.Info().Msg("influx sink off: no influx.url configured")
		return nil, nil
	}
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	sp, err := openSpool(filepath.Join(dataDir, "spool"), cfg.SpoolMaxSize, memBatches)
	if err != nil {
		return nil, err
	}
	opts := influxdb2.DefaultOptions().SetPrecision(time.Millisecond).
		SetHTTPRequestTimeout(uint(influxTimeout / time.Second))
	hc := opts.HTTPClient() // the library's client, with gzip done our way (influxgzip.go)
	hc.Transport = gzipTransport{next: hc.Transport}
	client := influxdb2.NewClientWithOptions(cfg.URL, cfg.Token.Reveal(), opts)
	api := client.WriteAPIBlocking(cfg.Org, cfg.Bucket)
	s := &InfluxSink{cfg: cfg, dir: dir, log: log, spool: sp, close: client.Close,
		write: func(ctx context.Context, batch string) error { return api.WriteRecord(ctx, batch) },
		full:  make(chan struct{}, 1), roomCh: make(chan struct{}),
		written: influxWritten, dropped: influxDropped, errors: influxErrors, spoolBytes: influxSpool,
		dropThr: logging.Throttle{Period: 10 * time.Second}, errThr: logging.Throttle{Period: 10 * time.Second},
	}
	s.spoolBytes.Set(float64(sp.bytes()))
	influxSpoolMax.Set(float64(cfg.SpoolMaxSize))
	return s, nil
}

// Write queues r for InfluxDB. It never blocks on InfluxDB or the disk.
func (s *InfluxSink) Write(r event.Reading) {
	var area string
	if s.dir != nil {
		area, _ = s.dir.MeterArea(r.Meter)
	}
	s.add(&r, area)
}

// waitBatches is how many batches may wait in memory (sealed, or being
// filled) before waitRoom waits: half the spool's memory queue, so the
// workers that passed it at once still fit there and nothing goes to disk
// while InfluxDB keeps up.
const waitBatches = memBatches / 2

// waitRoom returns once fewer than waitBatches batches wait in memory, or
// at once while InfluxDB is failing (the disk spool takes the readings
// then: a dead InfluxDB never holds up the notification path), and
// reserves room for n readings until unreserve. MQTT calls it before
// handing readings on, so a slow but working InfluxDB slows the intake
// instead of growing the queue; the reservation keeps workers that pass at
// once from overfilling the memory queue, which would send batches to disk.
func (s *InfluxSink) waitRoom(ctx context.Context, n int) error {
	for {
		s.roomMu.Lock()
		room := s.roomCh
		s.roomMu.Unlock()
		s.mu.Lock()
		open := (s.lines + s.reserved + s.cfg.BatchSize - 1) / s.cfg.BatchSize
		if s.failing.Load() || open+s.spool.memLen() < waitBatches {
			s.reserved += n
			s.mu.Unlock()
			return nil
		}
		s.mu.Unlock()
		select {
		case <-room:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// unreserve gives back the room waitRoom reserved for n readings: they
// were added, or were not handed on.
func (s *InfluxSink) unreserve(n int) {
	s.mu.Lock()
	s.reserved -= n
	s.mu.Unlock()
	s.freed()
}

// freed wakes the waitRoom callers: a batch left the queue.
func (s *InfluxSink) freed() {
	s.roomMu.Lock()
	close(s.roomCh)
	s.roomCh = make(chan struct{})
	s.roomMu.Unlock()
}

// add queues r with its meter's area, already looked up.
func (s *InfluxSink) add(r *event.Reading, area string) {
	s.mu.Lock()
	if s.lines >= maxOpenBatches*s.cfg.BatchSize {
		s.mu.Unlock()
		s.drop(1, "the influx sink is behind")
		return
	}
	s.buf = appendLine(s.buf, *r, area)
	s.lines++
	full := s.lines >= s.cfg.BatchSize
	s.mu.Unlock()
	if full {
		select {
		case s.full <- struct{}{}:
		default:
		}
	}
}

// appendLine appends r as one line of line protocol, tags in key order.
func appendLine(b []byte, r event.Reading, area string) []byte {
	b = append(b, "reading,"...)
	if area != "" {
		b = append(b, "area="...)
		b = appendTag(b, area)
		b = append(b, ',')
	}
	b = append(b, "meter="...)
	b = appendTag(b, r.Meter)
	b = append(b, " kwh="...)
	b = appendFloat(b, r.KWh)
	for _, f := range [...]struct {
		name string
		v    *float64
	}{{"voltage", r.Voltage}, {"current", r.Current}, {"power_kw", r.PowerKW}, {"balance", r.Balance}} {
		if f.v != nil && !math.IsNaN(*f.v) && !math.IsInf(*f.v, 0) {
			b = append(b, ',')
			b = append(b, f.name...)
			b = append(b, '=')
			b = appendFloat(b, *f.v)
		}
	}
	b = append(b, ' ')
	b = strconv.AppendInt(b, r.TS.UnixMilli(), 10)
	return append(b, '\n')
}

// appendFloat appends a float field value. Line protocol reads a number
// without the i or u suffix as a float, so 1 needs no ".0".
//
// Meter readings have a few decimals (220.1 V, 12345.67 kWh): for those
// the value is written as an integer with k decimals, the fewest k for
// which x = round(v·10^k) gives x/10^k == v back. Both that division and a
// parser reading "x with k decimals" round the same rational to the
// nearest float64, so the text reads back as v exactly, as strconv's
// shortest form does (and is the same text, its digits ending in no 0),
// at a fraction of its cost: float formatting was 8% of batch ingest's CPU.
func appendFloat(b []byte, v float64) []byte {
	if v > -1e12 && v < 1e12 && (v != 0 || !math.Signbit(v)) {
		p := 1.0
		for k := 0; k <= 4; k++ {
			if x := math.Round(v * p); x/p == v {
				return appendFixed(b, int64(x), k)
			}
			p *= 10
		}
	}
	return strconv.AppendFloat(b, v, 'f', -1, 64)
}

// appendFixed appends x/10^k with k decimals (k ≤ 4, |x| < 10^16).
func appendFixed(b []byte, x int64, k int) []byte {
	if x < 0 {
		b = append(b, '-')
		x = -x
	}
	var buf [24]byte
	i := len(buf)
	for d := 0; d < k; d++ {
		i--
		buf[i] = byte('0' + x%10)
		x /= 10
	}
	if k > 0 {
		i--
		buf[i] = '.'
	}
	for {
		i--
		buf[i] = byte('0' + x%10)
		x /= 10
		if x == 0 {
			break
		}
	}
	return append(b, buf[i:]...)
}

// appendTag escapes a tag value: commas, equals signs, spaces and
// backslashes. Line protocol cannot escape a line break or a tab, so they
// become escaped spaces; a bare one would end the line or the tag set, and
// InfluxDB would refuse the reading.
func appendTag(b []byte, v string) []byte {
	for i := 0; i < len(v); i++ {
		switch c := v[i]; c {
		case ',', '=', ' ', '\\':
			b = append(b, '\\', c)
		case '\n', '\r', '\t':
			b = append(b, '\\', ' ')
		default:
			b = append(b, c)
		}
	}
	return b
}

func (s *InfluxSink) drop(n int, why string) {
	s.dropped.Add(float64(n))
	if ok, held := s.dropThr.Allow(); ok {
		s.log.Error().Int("readings", n).Int("suppressed", held).Msg("influx readings dropped: " + why)
	}
}

// Run flushes and sends until ctx ends; then it spools what is still queued
// to disk, for the next run.
func (s *InfluxSink) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for range influxSenders {
		wg.Add(1)
		go func() { defer wg.Done(); s.send(ctx) }()
	}
	t := time.NewTicker(s.cfg.FlushEvery)
	defer t.Stop()
	checked := time.Now()
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			s.close()
			return s.shutdown()
		case <-t.C:
		case <-s.full:
		}
		s.flush()
		if time.Since(checked) >= spoolCheckEvery {
			checked = time.Now()
			s.checkSpool()
		}
	}
}

// spoolCheckEvery is how often the spool's queue is compared with its
// directory (see checkSpool).
const spoolCheckEvery = 10 * time.Second

// checkSpool drops from the queue the spool files that are gone from the
// disk (removed by hand to free it), logs them, and sets the spool gauge
// from what is left, so the gauge follows the disk.
func (s *InfluxSink) checkSpool() {
	gone, goneBytes, err := s.spool.reconcile()
	switch {
	case err != nil:
		s.log.Error().Err(err).Msg("cannot check the influx spool")
	case gone > 0:
		s.log.Warn().Int("batches", gone).Int64("bytes", goneBytes).
			Msg("influx spool files removed from the disk; their readings are gone")
	}
	s.spoolBytes.Set(float64(s.spool.bytes()))
}

// shutdown spools what is still in memory for the next run. Readings the
// disk cannot take (it is full) are lost: they are counted
// (gridbell_influx_points_lost_at_shutdown_total, and dropped) and logged in
// one line with their count.
func (s *InfluxSink) shutdown() error {
	lost, why, err := s.flushQuiet()
	n, serr := s.spool.spill()
	lost += n
	if serr != nil {
		why = serr.Error()
		if err == nil {
			err = serr
		}
	}
	s.spoolBytes.Set(float64(s.spool.bytes()))
	if lost == 0 {
		return nil
	}
	s.dropped.Add(float64(lost))
	influxLostAtShutdown.Add(float64(lost))
	s.log.Error().Str("reason", why).Int("readings", lost).
		Msg(fmt.Sprintf("%d influx readings held in memory could not be spooled at shutdown and are lost", lost))
	if err != nil {
		return fmt.Errorf("cannot keep %d influx readings for the next run: %w", lost, err)
	}
	return nil // the spool's cap: counted and logged like any other drop
}

// flush seals the buffer into batches of BatchSize lines and queues them.
// Readings the spool cannot take are dropped, counted and logged.
func (s *InfluxSink) flush() {
	for _, d := range s.seal() {
		s.drop(d.n, d.why)
	}
}

// flushQuiet is flush for shutdown: it returns how many readings the spool
// could not take and why, without counting or logging them, and the first
// error of the disk.
func (s *InfluxSink) flushQuiet() (n int, why string, err error) {
	for _, d := range s.seal() {
		n += d.n
		why = d.why
		if err == nil {
			err = d.err
		}
	}
	return n, why, err
}

// sealDrop is readings seal could not queue: the disk failed (err), or the
// spool is at its cap.
type sealDrop struct {
	n   int
	why string
	err error
}

// seal seals the buffer into batches of BatchSize lines and queues them;
// it returns what the spool did not take.
func (s *InfluxSink) seal() []sealDrop {
	var drops []sealDrop
	s.mu.Lock()
	buf := s.buf
	// The sealed bytes stay queued, so the next buffer is a new one.
	s.buf, s.lines = make([]byte, 0, min(len(buf), 128*s.cfg.BatchSize)), 0
	s.mu.Unlock()
	for len(buf) > 0 {
		cut, n := cutLines(buf, s.cfg.BatchSize)
		ok, err := s.spool.push(buf[:cut])
		switch {
		case err != nil:
			drops = append(drops, sealDrop{n, err.Error(), err})
		case !ok:
			drops = append(drops, sealDrop{n, "the spool is full (influx.spool_max_bytes)", nil})
		}
		buf = buf[cut:]
	}
	s.spoolBytes.Set(float64(s.spool.bytes()))
	return drops
}

// cutLines returns the byte length of the first n lines of b, and how many
// lines that is.
func cutLines(b []byte, n int) (int, int) {
	cut := 0
	for seen := 0; seen < n; seen++ {
		i := bytes.IndexByte(b[cut:], '\n')
		if i < 0 {
			return len(b), seen
		}
		cut += i + 1
	}
	return cut, n
}

// send writes the oldest batch not taken by the other sender, retrying it
// until InfluxDB takes it; with the queue empty, it waits.
func (s *InfluxSink) send(ctx context.Context) {
	wait := time.Second
	for ctx.Err() == nil {
		b, ok, err := s.spool.take()
		if err != nil {
			s.log.Error().Err(err).Msg("cannot read influx spool")
			sleep(ctx, wait)
			continue
		}
		if !ok {
			select {
			case <-ctx.Done():
			case <-s.spool.ready:
			}
			continue
		}
		err = s.writeBatch(ctx, b.data)
		for err != nil && ctx.Err() == nil && !permanent(err) {
			s.failing.Store(true)
			s.freed() // waitRoom callers go on: the disk takes their readings
			s.errors.Inc()
			if ok, n := s.errThr.Allow(); ok {
				s.log.Warn().Err(err).Int("suppressed", n).Int64("spooled_bytes", s.spool.bytes()).
					Msg("cannot write to influx; readings wait in the spool")
			}
			sleep(ctx, wait)
			wait = min(2*wait, influxRetryMax)
			err = s.writeBatch(ctx, b.data)
		}
		if ctx.Err() != nil {
			s.spool.release(b)
			return // the batch stays queued for the next run
		}
		wait = time.Second
		s.failing.Store(false)
		s.settle(bytes.Count(b.data, []byte{'\n'}), err)
		if err := s.spool.remove(b); err != nil {
			s.log.Error().Err(err).Msg("cannot remove written batch from the spool")
		}
		s.freed()
		s.spoolBytes.Set(float64(s.spool.bytes()))
	}
}

// settle counts a batch of lines done: written, or refused by InfluxDB for
// good (err is then permanent). A partial write ("... dropped=N") took all
// but N of the lines.
func (s *InfluxSink) settle(lines int, err error) {
	if err == nil {
		s.written.Add(float64(lines))
		return
	}
	refused := lines
	msg := err.Error()
	if i := strings.LastIndex(msg, "dropped="); i >= 0 && strings.Contains(msg, "partial write") {
		if n, perr := strconv.Atoi(strings.TrimSpace(msg[i+len("dropped="):])); perr == nil && n >= 0 && n <= lines {
			refused = n
		}
	}
	s.written.Add(float64(lines - refused))
	s.drop(refused, "influx refused them: "+msg)
}

func (s *InfluxSink) writeBatch(ctx context.Context, data []byte) error {
	ctx, cancel := context.WithTimeout(ctx, influxTimeout)
	defer cancel()
	return s.write(ctx, string(data))
}

// permanent reports whether InfluxDB refused a batch for its content (a
// 400: bad line protocol, a field type conflict), which no retry can cure.
// Everything else (down, slow, 5xx, 429, auth or a missing database that an
// operator can fix) is retried while the spool holds.
func permanent(err error) bool {
	var he *influxhttp.Error
	return errors.As(err, &he) && he.StatusCode == 400
}
