package contacts

import (
	"sync"
	"sync/atomic"
)

// index is an immutable snapshot of the registry, built by a builder, with
// mutable per-phone state (Twilio verdicts, STOP/START) in atomic words.
// Strings are interned in arenas and relations are int32 offset tables, so
// a customer costs well under 250 bytes and lookups allocate nothing.
type index struct {
	meters, accounts, phones     *symtab
	areas, concs, feeders, grids *symtab
	meter                        []meterRec
	meterSum                     []uint64 // per meter: its row's fingerprint, to tell a changed row from an unchanged one
	acct                         []acctRec
	acctMeterOff, acctMeters     []int32 // per account: meters, active first
	names                        strtab  // per account
	firstLine                    []int32 // per account: file line of its first row
	contacts                     []contactRec
	acctContactOff               []int32
	raws                         strtab // per contact
	phoneOff, phoneAccts         []int32
	phoneState                   []phoneWord
	overrideReason               sync.Map      // phone id → reason given with SetVerdict
	stateVersion                 atomic.Uint64 // counts phone state changes
	qualityCache                 atomic.Pointer[cachedQuality]
	areaOff, concOff             []int32
	areaMeters, concMeters       []string // shared with callers: read only
	feederAreas                  [][]string
	areaNames                    []string // per area: its name, "" when the file gave none
	gridInfo                     []GridInfo
	gridNames                    []string
	active, activeMeters         int
}

type meterRec struct {
	account, area, conc, feeder, grid int32
	class, flags                      uint8
}

const (
	flagPrepaid uint8 = 1 << iota
	flagRetired
)

func (m *meterRec) flag(f uint8) bool { return m.flags&f != 0 }

func (m *meterRec) setFlag(f uint8, on bool) {
	if on {
		m.flags |= f
	}
}

type acctRec struct {
	lang    uint8
	retired bool
}

type contactRec struct {
	phone   int32
	verdict uint8
	reason  uint8
	optOut  bool
}

// phoneWord holds a phone's state set after import: bits 0-3 a verdict
// code (0 = none), bits 4-5 opt-out (0 = as imported, 1 = in, 2 = out).
type phoneWord struct{ atomic.Uint32 }

const (
	optOutUnset uint32 = iota
	optOutNo
	optOutYes
)

var verdicts = []Verdict{"", Valid, Fixed, Landline, Invalid, Missing}

func verdictCode(v Verdict) uint8 {
	for i, x := range verdicts {
		if x == v {
			return uint8(i)
		}
	}
	return 0
}

var reasons = []string{"", reasonEmpty, reasonPlaceholder, reasonTooShort, reasonTooLong, reasonNotMobile,
	reasonNoAreaCode, reasonForeign, reasonLandline, reasonCleaned, reasonSplit}

func reasonCode(r string) uint8 {
	for i, x := range reasons {
		if x == r {
			return uint8(i)
		}
	}
	return 0
}

var classes = []Class{Resident, Commercial, Industrial, Important, HighRisk, LifeSupport}

func classCode(c Class) uint8 {
	for i, x := range classes {
		if x == c {
			return uint8(i)
		}
	}
	return 0
}

var languages = []string{"zh", "en"}

func langCode(l string) uint8 {
	if l == "en" {
		return 1
	}
	return 0
}

func (ix *index) hasContact(start int, c *contactBuild) bool {
	for _, o := range ix.contacts[start:] {
		if c.phone >= 0 && o.phone == c.phone {
			return true
		}
		if c.phone < 0 && o.phone < 0 && o.verdict == c.verdict && o.reason == c.reason {
			return true
		}
	}
	return false
}

// eachActivePhone calls fn for every number of every active account.
func (ix *index) eachActivePhone(fn func(acct, phone int32)) {
	for a := range ix.acct {
		if ix.acct[a].retired {
			continue
		}
		for _, c := range ix.contacts[ix.acctContactOff[a]:ix.acctContactOff[a+1]] {
			if c.phone >= 0 {
				fn(int32(a), c.phone)
			}
		}
	}
}

// contact returns contact i of the index with any later state applied.
func (ix *index) contact(i int32) Contact {
	c := ix.contacts[i]
	out := Contact{Raw: ix.raws.get(i), Verdict: verdicts[c.verdict], Reason: reasons[c.reason], OptOut: c.optOut}
	if c.phone < 0 {
		return out
	}
	out.Phone = ix.phones.get(c.phone)
	w := ix.phoneState[c.phone].Load()
	if v := w & 0xf; v != 0 {
		out.Verdict = verdicts[v]
		if r, ok := ix.overrideReason.Load(c.phone); ok {
			out.Reason = r.(string)
		}
	}
	switch w >> 4 & 3 {
	case optOutNo:
		out.OptOut = false
	case optOutYes:
		out.OptOut = true
	}
	return out
}

// setVerdict records v for phone e164; it reports whether the number is known.
func (ix *index) setVerdict(e164 string, v Verdict, reason string) bool {
	p, ok := ix.phones.find(e164)
	if !ok {
		return false
	}
	ix.overrideReason.Store(p, reason)
	w := &ix.phoneState[p]
	for {
		old := w.Load()
		if w.CompareAndSwap(old, old&^0xf|uint32(verdictCode(v))) {
			ix.stateVersion.Add(1)
			return true
		}
	}
}

func (ix *index) setOptOut(e164 string, optOut bool) bool {
	p, ok := ix.phones.find(e164)
	if !ok {
		return false
	}
	code := optOutNo
	if optOut {
		code = optOutYes
	}
	w := &ix.phoneState[p]
	for {
		old := w.Load()
		if w.CompareAndSwap(old, old&^0x30|code<<4) {
			ix.stateVersion.Add(1)
			return true
		}
	}
}

func (ix *index) meterInfo(m int32) MeterInfo {
	r := &ix.meter[m]
	return MeterInfo{Meter: ix.meters.get(m), Account: ix.accounts.get(r.account), Area: dim(ix.areas, r.area),
		Concentrator: dim(ix.concs, r.conc), Feeder: dim(ix.feeders, r.feeder), Grid: ix.grids.get(r.grid),
		Class: classes[r.class], Prepaid: r.flag(flagPrepaid)}
}

func dim(s *symtab, id int32) string {
	if id < 0 {
		return ""
	}
	return s.get(id)
}

// account assembles account a.
func (ix *index) account(a int32) Account {
	ms := ix.acctMeters[ix.acctMeterOff[a]:ix.acctMeterOff[a+1]]
	first := &ix.meter[ms[0]]
	out := Account{Account: ix.accounts.get(a), Name: ix.names.get(a), Area: dim(ix.areas, first.area),
		Grid: ix.grids.get(first.grid), Class: classes[first.class], Prepaid: first.flag(flagPrepaid),
		Language: languages[ix.acct[a].lang], Retired: ix.acct[a].retired}
	out.Meters = make([]string, 0, len(ms))
	for _, m := range ms {
		if out.Retired || !ix.meter[m].flag(flagRetired) {
			out.Meters = append(out.Meters, ix.meters.get(m))
		}
	}
	lo, hi := ix.acctContactOff[a], ix.acctContactOff[a+1]
	out.Contacts = make([]Contact, 0, hi-lo)
	for i := lo; i < hi; i++ {
		c := ix.contact(i)
		c.Language = out.Language
		out.Contacts = append(out.Contacts, c)
	}
	return out
}

// activeMeter returns the id of meter unless it is unknown or retired.
func (ix *index) activeMeter(meter string) (int32, bool) {
	m, ok := ix.meters.find(meter)
	return m, ok && !ix.meter[m].flag(flagRetired)
}

// group returns the strings of the group named key in a grouped table whose
// groups s names, capped so a caller's append cannot write into the next group.
func group(s *symtab, off []int32, ids []string, key string) []string {
	g, ok := s.find(key)
	if !ok || off[g] == off[g+1] {
		return nil
	}
	return ids[off[g]:off[g+1]:off[g+1]]
}
