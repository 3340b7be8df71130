// Package notifytest helps tests and load programs drive notify: a
// contacts file of n residents for the real registry, and an in-memory
// directory of hand-made accounts for policy tests.
package notifytest

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/gridbell/gridbell/contacts"
)

// Residents is a contacts file of n resident accounts 01%08d, account i
// with meter 33%010d in area TA-0101 of grid G01 and mobile Mobile(i).
func Residents(n int) string {
	var b strings.Builder
	b.WriteString("account,meter,area,grid,phone\n")
	for i := range n {
		fmt.Fprintf(&b, "01%08d,33%010d,TA-0101,G01,%s\n", i, i, Mobile(i))
	}
	return b.String()
}

// Mobile is the phone of Residents' account i: +861381 and i in 7 digits.
// The contacts cleaner takes +86138 0000000 (one digit repeated after the
// prefix) for a placeholder, so i must stay below 1,111,111.
func Mobile(i int) string { return fmt.Sprintf("+861381%07d", i) }

// Directory is an in-memory notify.Directory. Safe for concurrent use.
type Directory struct {
	mu       sync.Mutex
	accounts map[string]contacts.Account
	Verdicts map[string]contacts.Verdict // what SetVerdict was told, by phone
}

// NewDirectory returns a directory holding accts.
func NewDirectory(accts ...contacts.Account) *Directory {
	d := &Directory{accounts: map[string]contacts.Account{}, Verdicts: map[string]contacts.Verdict{}}
	for _, a := range accts {
		d.Put(a)
	}
	return d
}

// Put adds or replaces an account.
func (d *Directory) Put(a contacts.Account) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.accounts[a.Account] = a
}

// Resident returns a resident account with one valid mobile per phone.
func Resident(acct, area, lang string, phones ...string) contacts.Account {
	a := contacts.Account{Account: acct, Area: area, Grid: "G01", Class: contacts.Resident, Language: lang}
	for _, p := range phones {
		a.Contacts = append(a.Contacts, contacts.Contact{Phone: p, Raw: p, Verdict: contacts.Valid, Language: lang})
	}
	return a
}

// Account implements notify.Directory.
func (d *Directory) Account(acct string) (contacts.Account, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	a, ok := d.accounts[acct]
	return a, ok
}

// AccountsByPhone implements notify.Directory.
func (d *Directory) AccountsByPhone(phone string) []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []string
	for id, a := range d.accounts {
		for _, c := range a.Contacts {
			if c.Phone == phone {
				out = append(out, id)
				break
			}
		}
	}
	return out
}

// SetVerdict implements notify.Directory.
func (d *Directory) SetVerdict(_ context.Context, phone string, v contacts.Verdict, reason string) error {
	d.update(phone, func(c *contacts.Contact) { c.Verdict, c.Reason = v, reason })
	d.mu.Lock()
	d.Verdicts[phone] = v
	d.mu.Unlock()
	return nil
}

// SetOptOut implements notify.Directory.
func (d *Directory) SetOptOut(_ context.Context, phone string, optOut bool) error {
	d.update(phone, func(c *contacts.Contact) { c.OptOut = optOut })
	return nil
}

// OptedOut reports whether phone is opted out anywhere.
func (d *Directory) OptedOut(phone string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, a := range d.accounts {
		for _, c := range a.Contacts {
			if c.Phone == phone && c.OptOut {
				return true
			}
		}
	}
	return false
}

func (d *Directory) update(phone string, f func(*contacts.Contact)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for id, a := range d.accounts {
		changed := false
		cs := append([]contacts.Contact(nil), a.Contacts...)
		for i := range cs {
			if cs[i].Phone == phone {
				f(&cs[i])
				changed = true
			}
		}
		if changed {
			a.Contacts = cs
			d.accounts[id] = a
		}
	}
}
