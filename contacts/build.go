package contacts

import (
	"cmp"
	"slices"
)

// builder turns rows, from a file or the store, into an index. Rows may come
// in any order: an account's details come from its first active row by seq.
type builder struct {
	meters, accounts, phones   *symtab
	areas, concs, feeders, grs *symtab
	meter                      []meterRec
	meterKey                   []int64 // retired<<40 | seq<<8
	meterSum                   []uint64
	acct                       []acctBuild
	contacts                   []contactBuild
	grid                       []gridBuild
	areaName                   []areaNameBuild // per area
}

// areaNameBuild is an area's name, from its first named row by key.
type areaNameBuild struct {
	key  int64
	name string
}

// acctBuild is what the builder keeps of an account until freeze.
type acctBuild struct {
	key  int64 // of the row its details come from
	line int32
	name string
	lang uint8
}

type contactBuild struct {
	acct    int32
	key     int64 // row key | position in the row
	phone   int32 // -1 when none
	verdict uint8
	reason  uint8
	optOut  bool
	raw     string
}

type gridBuild struct {
	key          int64
	manager      string
	managerPhone string
}

const retiredKey = int64(1) << 40

func rowKey(r *row) int64 {
	k := int64(r.seq) << 8
	if r.retired {
		k |= retiredKey
	}
	return k
}

func newBuilder(hint int) *builder {
	return &builder{
		meters: newSymtab(hint), accounts: newSymtab(hint), phones: newSymtab(hint),
		areas: newSymtab(hint / 64), concs: newSymtab(hint / 64), feeders: newSymtab(16), grs: newSymtab(16),
		meter: make([]meterRec, 0, hint), meterKey: make([]int64, 0, hint),
	}
}

// add adds r. It returns false, adding nothing, when r's meter is already in.
func (b *builder) add(r *row) bool {
	if _, added := b.meters.intern(r.f[colMeter]); !added {
		return false
	}
	key := rowKey(r)
	a := b.addAccount(r, key)
	rec := meterRec{account: a, area: b.addArea(r, key), conc: internDim(b.concs, r.f[colConcentrator]),
		feeder: internDim(b.feeders, r.f[colFeeder]), grid: b.addGrid(r, key), class: classCode(r.class)}
	rec.setFlag(flagPrepaid, r.prepaid)
	rec.setFlag(flagRetired, r.retired)
	b.meter = append(b.meter, rec)
	b.meterKey = append(b.meterKey, key)
	r.sum = r.fingerprint()
	b.meterSum = append(b.meterSum, r.sum)
	b.addContacts(a, key, r)
	return true
}

// addRow adds a stored row, unique by the store's key.
func (b *builder) addRow(r *row) error {
	b.add(r)
	return nil
}

func internDim(s *symtab, v string) int32 {
	if v == "" {
		return -1
	}
	id, _ := s.intern(v)
	return id
}

// addArea interns r's area and keeps its name from the first row by key
// that gives one.
func (b *builder) addArea(r *row, key int64) int32 {
	a := internDim(b.areas, r.f[colArea])
	if a < 0 {
		return a
	}
	for int(a) >= len(b.areaName) {
		b.areaName = append(b.areaName, areaNameBuild{})
	}
	if n := &b.areaName[a]; r.f[colAreaName] != "" && (n.name == "" || key < n.key) {
		*n = areaNameBuild{key: key, name: r.f[colAreaName]}
	}
	return a
}

func (b *builder) addAccount(r *row, key int64) int32 {
	a, added := b.accounts.intern(r.f[colAccount])
	if added {
		b.acct = append(b.acct, acctBuild{key: key, line: r.line, name: r.f[colName], lang: langCode(r.f[colLanguage])})
		return a
	}
	if ab := &b.acct[a]; key < ab.key {
		*ab = acctBuild{key: key, line: r.line, name: r.f[colName], lang: langCode(r.f[colLanguage])}
	}
	return a
}

func (b *builder) addGrid(r *row, key int64) int32 {
	g, added := b.grs.intern(r.f[colGrid])
	if added {
		b.grid = append(b.grid, gridBuild{key: -1})
	}
	gb := &b.grid[g]
	if r.f[colManager] != "" && (gb.manager == "" || key < gb.key) {
		*gb = gridBuild{key: key, manager: r.f[colManager], managerPhone: r.f[colManagerPhone]}
	}
	return g
}

func (b *builder) addContacts(a int32, key int64, r *row) {
	if r.phones == nil {
		r.clean()
	}
	for k, ct := range r.phones {
		cb := contactBuild{acct: a, key: key + int64(k), phone: -1, verdict: verdictCode(ct.Verdict),
			reason: reasonCode(ct.Reason), optOut: r.optOut, raw: ct.Raw}
		if ct.Phone != "" {
			cb.phone, _ = b.phones.intern(ct.Phone)
		}
		b.contacts = append(b.contacts, cb)
	}
}

// freeze builds the index. The builder is spent.
func (b *builder) freeze() *index {
	ix := &index{meters: b.meters, accounts: b.accounts, phones: b.phones,
		areas: b.areas, concs: b.concs, feeders: b.feeders, grids: b.grs, meter: slices.Clip(b.meter), meterSum: slices.Clip(b.meterSum)}
	if cap(b.meter) > len(b.meter)+len(b.meter)/8 {
		ix.meter = slices.Clone(b.meter) // drop append slack: the index lives long
		ix.meterSum = slices.Clone(b.meterSum)
	}
	for _, s := range []*symtab{ix.meters, ix.accounts, ix.phones, ix.areas, ix.concs, ix.feeders, ix.grids} {
		s.freeze()
	}
	b.freezeAccounts(ix)
	b.freezeContacts(ix)
	ix.phoneState = make([]phoneWord, ix.phones.len())
	b.freezeGroups(ix)
	b.freezeGrids(ix)
	ix.areaNames = make([]string, len(b.areaName))
	for a, n := range b.areaName {
		ix.areaNames[a] = n.name
	}
	return ix
}

// freezeAccounts lays out each account's meters, active first by seq.
func (b *builder) freezeAccounts(ix *index) {
	n := len(b.acct)
	ix.acct = make([]acctRec, n)
	ix.acctMeterOff = make([]int32, n+1)
	for _, m := range b.meter {
		ix.acctMeterOff[m.account+1]++
	}
	prefixSum(ix.acctMeterOff)
	ix.acctMeters = make([]int32, len(b.meter))
	fill := slices.Clone(ix.acctMeterOff[:n])
	for i, m := range b.meter {
		ix.acctMeters[fill[m.account]] = int32(i)
		fill[m.account]++
	}
	for a := range n {
		ms := ix.acctMeters[ix.acctMeterOff[a]:ix.acctMeterOff[a+1]]
		if len(ms) > 1 {
			slices.SortFunc(ms, func(x, y int32) int { return cmp.Compare(b.meterKey[x], b.meterKey[y]) })
		}
		ix.acct[a] = acctRec{lang: b.acct[a].lang, retired: b.meter[ms[0]].flag(flagRetired)}
		if !ix.acct[a].retired {
			ix.active++
			for _, m := range ms {
				if !b.meter[m].flag(flagRetired) {
					ix.activeMeters++
				}
			}
		}
	}
	ix.names.ends = make([]uint32, 0, n)
	for a := range b.acct {
		ix.names.add(b.acct[a].name)
	}
	ix.names.freeze()
	ix.firstLine = make([]int32, n)
	for a := range b.acct {
		ix.firstLine[a] = b.acct[a].line
	}
}

func prefixSum(off []int32) {
	for i := 1; i < len(off); i++ {
		off[i] += off[i-1]
	}
}

// freezeContacts groups contacts by account in row order, keeps only the
// active rows' numbers of an active account, drops repeats, and keeps a
// Missing entry only for an account with no number at all.
func (b *builder) freezeContacts(ix *index) {
	n := len(b.acct)
	off := make([]int32, n+1)
	for _, c := range b.contacts {
		off[c.acct+1]++
	}
	prefixSum(off)
	order := make([]int32, len(b.contacts))
	fill := slices.Clone(off[:n])
	for i, c := range b.contacts {
		order[fill[c.acct]] = int32(i)
		fill[c.acct]++
	}
	ix.acctContactOff = make([]int32, n+1)
	ix.contacts = make([]contactRec, 0, len(b.contacts))
	ix.raws.ends = make([]uint32, 0, len(b.contacts))
	for a := range n {
		group := order[off[a]:off[a+1]]
		slices.SortFunc(group, func(x, y int32) int { return cmp.Compare(b.contacts[x].key, b.contacts[y].key) })
		b.keepContacts(ix, group, ix.acct[a].retired)
		ix.acctContactOff[a+1] = int32(len(ix.contacts))
	}
	ix.raws.freeze()
	b.contacts = nil
}

func (b *builder) keepContacts(ix *index, group []int32, retired bool) {
	start := len(ix.contacts)
	var missing *contactBuild
	for _, i := range group {
		c := &b.contacts[i]
		switch {
		case !retired && c.key&retiredKey != 0:
		case c.verdict == verdictCode(Missing):
			missing = c
		case !ix.hasContact(start, c):
			ix.contacts = append(ix.contacts, contactRec{phone: c.phone, verdict: c.verdict, reason: c.reason, optOut: c.optOut})
			ix.raws.add(c.raw)
		}
	}
	if len(ix.contacts) == start && missing != nil {
		ix.contacts = append(ix.contacts, contactRec{phone: -1, verdict: missing.verdict, reason: missing.reason})
		ix.raws.add(missing.raw)
	}
}

// freezeGroups builds area → meters, concentrator → meters (active meters)
// and phone → accounts (active accounts).
func (b *builder) freezeGroups(ix *index) {
	ix.areaOff, ix.areaMeters = b.groupMeters(ix, ix.areas.len(), func(m *meterRec) int32 { return m.area })
	ix.concOff, ix.concMeters = b.groupMeters(ix, ix.concs.len(), func(m *meterRec) int32 { return m.conc })
	n := ix.phones.len()
	ix.phoneOff = make([]int32, n+1)
	ix.eachActivePhone(func(a, p int32) { ix.phoneOff[p+1]++ })
	prefixSum(ix.phoneOff)
	ix.phoneAccts = make([]int32, ix.phoneOff[n])
	fill := slices.Clone(ix.phoneOff[:n])
	ix.eachActivePhone(func(a, p int32) {
		ix.phoneAccts[fill[p]] = a
		fill[p]++
	})
}

func (b *builder) groupMeters(ix *index, groups int, key func(*meterRec) int32) ([]int32, []string) {
	off := make([]int32, groups+1)
	for i := range b.meter {
		if g := key(&b.meter[i]); g >= 0 && !b.meter[i].flag(flagRetired) {
			off[g+1]++
		}
	}
	prefixSum(off)
	ids := make([]string, off[groups])
	fill := slices.Clone(off[:groups])
	for i := range b.meter {
		if g := key(&b.meter[i]); g >= 0 && !b.meter[i].flag(flagRetired) {
			ids[fill[g]] = ix.meters.get(int32(i))
			fill[g]++
		}
	}
	return off, ids
}

// freezeGrids builds grid → manager and areas, and feeder → areas, from
// active meters.
func (b *builder) freezeGrids(ix *index) {
	gridAreas := map[[2]int32]bool{}
	feederAreas := map[[2]int32]bool{}
	for i := range b.meter {
		m := &b.meter[i]
		if m.flag(flagRetired) || m.area < 0 {
			continue
		}
		gridAreas[[2]int32{m.grid, m.area}] = true
		if m.feeder >= 0 {
			feederAreas[[2]int32{m.feeder, m.area}] = true
		}
	}
	ix.gridInfo = make([]GridInfo, ix.grids.len())
	for g := range ix.gridInfo {
		gb := b.grid[g]
		ix.gridInfo[g] = GridInfo{Grid: ix.grids.get(int32(g)), Manager: gb.manager, ManagerPhone: smsPhone(gb.managerPhone)}
	}
	for k := range gridAreas {
		ix.gridInfo[k[0]].Areas = append(ix.gridInfo[k[0]].Areas, ix.areas.get(k[1]))
	}
	for g := range ix.gridInfo {
		if gi := &ix.gridInfo[g]; len(gi.Areas) > 0 {
			slices.Sort(gi.Areas)
			ix.gridNames = append(ix.gridNames, gi.Grid)
		}
	}
	slices.Sort(ix.gridNames)
	ix.feederAreas = make([][]string, ix.feeders.len())
	for k := range feederAreas {
		ix.feederAreas[k[0]] = append(ix.feederAreas[k[0]], ix.areas.get(k[1]))
	}
	for _, as := range ix.feederAreas {
		slices.Sort(as)
	}
}

// smsPhone returns the first number of raw that can take an SMS.
func smsPhone(raw string) string {
	if raw == "" {
		return ""
	}
	for _, c := range Clean(raw) {
		if c.Verdict.CanSMS() {
			return c.Phone
		}
	}
	return ""
}
