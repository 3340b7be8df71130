// Package notifytest helps tests and load programs drive notify: an
// in-memory directory of accounts standing in for the contacts registry.
package notifytest

import (
	"context"
	"sync"

	"github.com/gridbell/gridbell/contacts"
)

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
