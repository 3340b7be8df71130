package ingest

import (
	"bytes"
	"time"

	"github.com/gridbell/gridbell/internal/event"
)

// The fast reading decoder. Almost every MQTT message is a reading or a
// concentrator's batch of them, in one plain form: ASCII strings without
// escapes, decimal numbers without exponents, the seven known keys once
// each. For those it skips encoding/json's reflection and most of its
// allocations: the Readings and their optional numbers come from a chunk
// (readingCell), a single reading takes its meter id from the topic, and a
// batch's meter ids share one string. Anything else, including every
// payload with something to reject, goes to the general decoder, so what
// comes out is the same either way (FuzzFastReadings holds both to that).

// readingDecoder decodes reading payloads. An MQTT worker keeps one, so its
// scratch space and the rest of its current chunk serve the next messages;
// the zero value is ready. Not safe for concurrent use.
type readingDecoder struct {
	cells []readingCell // what is left of the current chunk
	chunk int           // cells in a new chunk; 0 is readingChunk
	names []byte        // a batch's meter ids, back to back
	ends  []int         // where each meter id ends in names
}

// readingCell holds one decoded reading and its optional numbers, which
// its pointers point into.
type readingCell struct {
	r   event.Reading
	opt [4]float64 // voltage, current, power_kw, balance
}

// readingChunk is the cells allocated at once: about 9 KiB.
const readingChunk = 64

func (d *readingDecoder) cell() *readingCell {
	if len(d.cells) == 0 {
		n := d.chunk
		if n <= 0 {
			n = readingChunk
		}
		d.cells = make([]readingCell, n)
	}
	c := &d.cells[0]
	d.cells = d.cells[1:]
	return c
}

// appendMQTT is DecodeMQTT appending to dst: dst grows by the events
// decoded, the valid elements of a batch included when err is not nil.
func (d *readingDecoder) appendMQTT(dst []event.Event, prefix, topic string, payload []byte, now time.Time, lim Limits) ([]event.Event, error) {
	form, conc, meter, ok := parseTopic(prefix, topic)
	if ok && (form == formReading || form == formReadings) {
		lim.Defaults()
		if len(payload) <= lim.MaxPayload {
			v := validator{now: now, lim: lim}
			if out, ok := d.appendReadings(dst, payload, form == formReadings, &v, conc, meter); ok {
				return out, nil
			}
		}
	}
	evs, err := decodeMQTTGeneral(prefix, topic, payload, now, lim)
	return append(dst, evs...), err
}

// appendReadings appends the readings of payload to dst when the payload
// is in the plain form and every reading in it is valid. Otherwise it
// returns dst unchanged and false: the general decoder decodes it, or says
// what is wrong. topicMeter is "" on the batch topic.
func (d *readingDecoder) appendReadings(dst []event.Event, payload []byte, arrays bool, v *validator, conc, topicMeter string) ([]event.Event, bool) {
	s := scanner{b: payload}
	n := len(dst)
	var ok bool
	switch s.skipSpace(); {
	case s.is('{'):
		dst, ok = d.appendOne(dst, &s, v, conc, topicMeter)
	case s.is('[') && arrays:
		dst, ok = d.appendArray(dst, &s, v, conc)
	}
	if s.skipSpace(); !ok || s.i != len(s.b) {
		clear(dst[n:])
		return dst[:n], false
	}
	return dst, true
}

// appendOne decodes a payload of one reading object.
func (d *readingDecoder) appendOne(dst []event.Event, s *scanner, v *validator, conc, topicMeter string) ([]event.Event, bool) {
	c := d.cell()
	meter, ev, ok := d.reading(s, c, v, conc, topicMeter)
	if !ok {
		return dst, false
	}
	c.r.Meter = topicMeter
	if topicMeter == "" {
		c.r.Meter = string(meter)
	}
	return append(dst, ev), true
}

// appendArray decodes a batch: an array of reading objects. The meter ids
// are gathered in d.names and turned into one string at the end.
func (d *readingDecoder) appendArray(dst []event.Event, s *scanner, v *validator, conc string) ([]event.Event, bool) {
	s.i++ // '['
	d.names, d.ends = d.names[:0], d.ends[:0]
	n := len(dst)
	if s.skipSpace(); s.is(']') {
		s.i++
		return dst, true
	}
	for {
		c := d.cell()
		meter, ev, ok := d.reading(s, c, v, conc, "")
		if !ok {
			return dst, false
		}
		d.names = append(d.names, meter...)
		d.ends = append(d.ends, len(d.names))
		dst = append(dst, ev)
		if s.skipSpace(); s.is(']') {
			s.i++
			break
		}
		if !s.is(',') {
			return dst, false
		}
		s.i++
	}
	names, start := string(d.names), 0
	for k, end := range d.ends {
		dst[n+k].Reading.Meter = names[start:end]
		start = end
	}
	return dst, true
}

// Keys of a reading object, as bits of what was seen.
const (
	keyMeter = 1 << iota
	keyTS
	keyKWh
	keyVoltage
	keyCurrent
	keyPowerKW
	keyBalance
)

// reading decodes one reading object at s into c and checks it as
// validator.reading does; ok is false for anything the general decoder
// should see. c.r.Meter is left for the caller to set from meter.
func (d *readingDecoder) reading(s *scanner, c *readingCell, v *validator, conc, topicMeter string) (meter []byte, ev event.Event, ok bool) {
	var raw rawReading
	var ts []byte
	if !s.object(func(key []byte) bool {
		var ok bool
		switch string(key) {
		case "meter":
			meter, ok = s.str()
		case "ts":
			ts, ok = s.str()
		case "kwh":
			raw.KWh, ok = s.num(&c.r.KWh)
		case "voltage":
			raw.Voltage, ok = s.num(&c.opt[0])
		case "current":
			raw.Current, ok = s.num(&c.opt[1])
		case "power_kw":
			raw.PowerKW, ok = s.num(&c.opt[2])
		case "balance":
			raw.Balance, ok = s.num(&c.opt[3])
		}
		return ok
	}) {
		return nil, ev, false
	}
	// checkID's bounds; the scanner let no control or non-ASCII byte through.
	if len(meter) == 0 || len(meter) > maxIDLen || (topicMeter != "" && string(meter) != topicMeter) {
		return nil, ev, false
	}
	if len(ts) == 0 || c.r.TS.UnmarshalText(ts) != nil { // time.Parse(time.RFC3339, ts)
		return nil, ev, false
	}
	late, reason := v.window(c.r.TS)
	if reason != "" || readingValues(-1, &raw) != nil {
		return nil, ev, false
	}
	c.r.Concentrator, c.r.Voltage, c.r.Current, c.r.PowerKW, c.r.Balance = conc, raw.Voltage, raw.Current, raw.PowerKW, raw.Balance
	return meter, event.Event{Reading: &c.r, Source: "mqtt", Received: v.now, Late: late}, true
}

// scanner reads the plain subset of JSON the fast decoder takes.
type scanner struct {
	b []byte
	i int
}

func (s *scanner) is(c byte) bool { return s.i < len(s.b) && s.b[s.i] == c }

func (s *scanner) skipSpace() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// object reads an object whose keys are each known to value, which reads
// the key's value and reports whether it could. A key seen twice, or one
// value does not know, ends it with false.
func (s *scanner) object(value func(key []byte) bool) bool {
	if s.skipSpace(); !s.is('{') {
		return false
	}
	s.i++
	var seen uint
	for {
		key, ok := s.str()
		if !ok {
			return false // "{}" too: it lacks the required keys
		}
		bit := keyBit(key)
		if bit == 0 || seen&bit != 0 {
			return false
		}
		seen |= bit
		if s.skipSpace(); !s.is(':') {
			return false
		}
		s.i++
		if !value(key) {
			return false
		}
		s.skipSpace()
		switch {
		case s.is('}'):
			s.i++
			return true
		case !s.is(','):
			return false
		}
		s.i++
	}
}

func keyBit(key []byte) uint {
	switch string(key) {
	case "meter":
		return keyMeter
	case "ts":
		return keyTS
	case "kwh":
		return keyKWh
	case "voltage":
		return keyVoltage
	case "current":
		return keyCurrent
	case "power_kw":
		return keyPowerKW
	case "balance":
		return keyBalance
	}
	return 0
}

// str reads a string of printable ASCII without escapes and returns its
// contents; anything else is for the general decoder.
func (s *scanner) str() ([]byte, bool) {
	if s.skipSpace(); !s.is('"') {
		return nil, false
	}
	start := s.i + 1
	end := bytes.IndexByte(s.b[start:], '"')
	if end < 0 {
		return nil, false
	}
	str := s.b[start : start+end]
	for _, c := range str {
		if c < 0x20 || c >= 0x7f || c == '\\' {
			return nil, false
		}
	}
	s.i = start + end + 1
	return str, true
}

// exact10 holds the powers of ten a float64 represents exactly.
var exact10 = [...]float64{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10,
	1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22}

// num reads a JSON number without exponent and with at most 15 digits
// into *f and returns f. Such a number is an integer below 2^53 divided by
// an exact power of ten, and one correctly rounded division gives what
// strconv.ParseFloat gives (its own exact fast path). Anything else (an
// exponent, more digits, null, a string) is for the general decoder.
func (s *scanner) num(f *float64) (*float64, bool) {
	s.skipSpace()
	b, i := s.b, s.i
	neg := i < len(b) && b[i] == '-'
	if neg {
		i++
	}
	var m uint64
	digits, frac := 0, 0
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for ; i < len(b) && b[i] >= '0' && b[i] <= '9' && digits <= 15; i++ {
			m, digits = m*10+uint64(b[i]-'0'), digits+1
		}
	default:
		return nil, false
	}
	if i < len(b) && b[i] == '.' {
		i++
		for ; i < len(b) && b[i] >= '0' && b[i] <= '9' && digits <= 15; i++ {
			m, digits, frac = m*10+uint64(b[i]-'0'), digits+1, frac+1
		}
		if frac == 0 {
			return nil, false
		}
	}
	if digits > 15 || (i < len(b) && (b[i] == 'e' || b[i] == 'E' || (b[i] >= '0' && b[i] <= '9'))) {
		return nil, false
	}
	*f = float64(m) / exact10[frac]
	if neg {
		*f = -*f
	}
	s.i = i
	return f, true
}
