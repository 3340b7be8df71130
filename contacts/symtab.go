package contacts

import "hash/maphash"

// strtab is an append-only list of strings kept in one byte arena: 4 bytes
// of overhead per string instead of a 16-byte header and an allocation.
// After freeze, get returns substrings of one string and allocates nothing.
type strtab struct {
	buf  []byte   // while building
	data string   // after freeze
	ends []uint32 // ends[i] is where string i ends
}

func (t *strtab) add(s string) int32 {
	t.buf = append(t.buf, s...)
	t.ends = append(t.ends, uint32(len(t.buf)))
	return int32(len(t.ends) - 1)
}

func (t *strtab) bounds(i int32) (int, int) {
	start := 0
	if i > 0 {
		start = int(t.ends[i-1])
	}
	return start, int(t.ends[i])
}

// get returns string i. Only valid after freeze.
func (t *strtab) get(i int32) string {
	a, b := t.bounds(i)
	return t.data[a:b]
}

// bytes returns string i while building.
func (t *strtab) bytes(i int32) []byte {
	a, b := t.bounds(i)
	return t.buf[a:b]
}

func (t *strtab) len() int { return len(t.ends) }

func (t *strtab) freeze() {
	t.data = string(t.buf)
	t.buf = nil
	t.ends = append([]uint32(nil), t.ends...) // drop append slack
}

// symtab interns strings as dense int32 ids with an open-addressing hash
// table of ids: about 8 bytes per string on top of the strtab.
type symtab struct {
	strtab
	seed  maphash.Seed
	slots []int32 // id+1; 0 is empty
}

func newSymtab(sizeHint int) *symtab {
	s := &symtab{seed: maphash.MakeSeed()}
	s.slots = make([]int32, slotsFor(sizeHint))
	return s
}

func slotsFor(n int) int {
	size := 16
	for size < 2*n {
		size <<= 1
	}
	return size
}

// intern returns the id of str, adding it when new.
func (s *symtab) intern(str string) (id int32, added bool) {
	if s.len()*2 >= len(s.slots) {
		s.grow()
	}
	mask := uint64(len(s.slots) - 1)
	for i := maphash.String(s.seed, str) & mask; ; i = (i + 1) & mask {
		v := s.slots[i]
		if v == 0 {
			id = s.add(str)
			s.slots[i] = id + 1
			return id, true
		}
		if string(s.bytes(v-1)) == str {
			return v - 1, false
		}
	}
}

func (s *symtab) grow() {
	s.slots = make([]int32, 2*len(s.slots))
	mask := uint64(len(s.slots) - 1)
	for id := range int32(s.len()) {
		i := maphash.Bytes(s.seed, s.bytes(id)) & mask
		for s.slots[i] != 0 {
			i = (i + 1) & mask
		}
		s.slots[i] = id + 1
	}
}

// find returns the id of str. Only valid after freeze; allocates nothing.
func (s *symtab) find(str string) (int32, bool) {
	if len(s.slots) == 0 {
		return 0, false
	}
	mask := uint64(len(s.slots) - 1)
	for i := maphash.String(s.seed, str) & mask; ; i = (i + 1) & mask {
		v := s.slots[i]
		if v == 0 {
			return 0, false
		}
		if s.get(v-1) == str {
			return v - 1, true
		}
	}
}
