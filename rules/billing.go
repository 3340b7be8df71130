package rules

import (
	"fmt"
	"time"

	"github.com/gridbell/gridbell/internal/event"
)

// account is the billing state of one account, stored as JSON.
// Guarded by Engine.mu.
type account struct {
	Balance      float64   `json:"balance"`
	BalanceAt    time.Time `json:"balance_at"`
	HasBalance   bool      `json:"has_balance,omitempty"`
	LowSent      bool      `json:"low_sent,omitempty"`
	ExhSent      bool      `json:"exhausted_sent,omitempty"`
	Arrears      bool      `json:"arrears,omitempty"`
	ArrearsAt    time.Time `json:"arrears_at"`
	DisconnectAt time.Time `json:"disconnect_at"`
	NoticeAt     time.Time `json:"notice_at"`

	dirty bool
}

func (e *Engine) acct(id string) *account {
	a := e.accounts[id]
	if a == nil {
		a = &account{}
		e.accounts[id] = a
	}
	if !a.dirty {
		a.dirty = true
		e.dirtyAccounts = append(e.dirtyAccounts, id)
	}
	return a
}

// disconnected reports whether an account is in arrears with a disconnection
// carried out: its customer gets no outage intent. Lock: e.mu held.
func (e *Engine) disconnected(id string) bool {
	a := e.accounts[id]
	return a != nil && a.Arrears && !a.DisconnectAt.IsZero() && !a.DisconnectAt.After(e.clk.Now())
}

// billingRef is a stable id of a billing event: the same event replayed
// gets the same ref and so the same idempotency key.
func billingRef(b *event.BillingEvent) string {
	return fmt.Sprintf("BIL-%s-%s-%s", b.Account, b.Type, b.At.UTC().Format("20060102T150405"))
}

// applyBilling applies one billing event. Accounts not in the registry keep
// their state and get no intents. Lock: e.mu held.
func (e *Engine) applyBilling(b *event.BillingEvent) {
	if b.Account == "" {
		return
	}
	switch b.Type {
	case event.BillingBalance:
		if b.Balance != nil {
			e.balance(b.Account, *b.Balance, b.At, "BIL-"+b.Account+"-balance", false)
		}
	case event.BillingPayment:
		a := e.acct(b.Account)
		if b.At.After(a.ArrearsAt) {
			a.Arrears, a.DisconnectAt = false, time.Time{}
		}
		bal := a.Balance
		if b.Balance != nil {
			bal = *b.Balance
		} else if b.Amount != nil {
			bal += *b.Amount
		}
		e.balance(b.Account, bal, b.At, "BIL-"+b.Account+"-payment", true)
	case event.BillingArrears:
		a := e.acct(b.Account)
		if !b.At.After(a.ArrearsAt) {
			return
		}
		a.Arrears, a.ArrearsAt = true, b.At
		vars := map[string]string{"due": b.Due}
		if b.Amount != nil {
			vars["amount"] = money(*b.Amount)
		}
		e.billingIntent(b.Account, event.KindArrears, billingRef(b), vars)
	case event.BillingDisconnectScheduled:
		a := e.acct(b.Account)
		if !b.At.After(a.NoticeAt) || b.DisconnectAt == nil {
			return
		}
		a.NoticeAt, a.DisconnectAt = b.At, *b.DisconnectAt
		a.Arrears = true
		e.billingIntent(b.Account, event.KindDisconnectNotice, billingRef(b),
			map[string]string{"disconnect_at": b.DisconnectAt.Format(time.RFC3339)})
	}
}

func money(v float64) string { return fmt.Sprintf("%.2f", v) }

// balance applies a balance stamped at, from a prepaid reading or a billing
// event, whichever is newer. balance_low fires once per drop below
// BalanceLow, re-armed by a payment or a balance back at the threshold;
// balance_exhausted fires once at zero or below, re-armed above zero.
// Lock: e.mu held.
func (e *Engine) balance(id string, bal float64, at time.Time, ref string, payment bool) {
	a := e.accounts[id]
	if a != nil && a.HasBalance && !at.After(a.BalanceAt) {
		return
	}
	a = e.acct(id)
	a.Balance, a.BalanceAt, a.HasBalance = bal, at, true
	if payment || bal >= e.cfg.BalanceLow {
		a.LowSent = false
	}
	if bal > 0 {
		a.ExhSent = false
	}
	var kind event.Kind
	switch {
	case payment:
		return
	case bal <= 0 && !a.ExhSent:
		a.ExhSent, a.LowSent = true, true
		kind = event.KindBalanceExhausted
	case bal > 0 && bal < e.cfg.BalanceLow && !a.LowSent:
		a.LowSent = true
		kind = event.KindBalanceLow
	default:
		return // most prepaid readings: nothing to tell
	}
	e.billingIntent(id, kind, ref+"-"+at.UTC().Format("20060102T150405"),
		map[string]string{"balance": money(bal), "threshold": money(e.cfg.BalanceLow)})
}

// billingIntent emits a billing intent for an account of the registry.
// Lock: e.mu held.
func (e *Engine) billingIntent(id string, kind event.Kind, ref string, vars map[string]string) {
	acct, ok := e.dir.Account(id)
	if !ok || acct.Retired {
		return
	}
	e.emit(event.Intent{Key: string(kind) + "/" + ref, Kind: kind, Account: id, Grid: acct.Grid, Ref: ref,
		Vars: vars, Priority: event.PriorityBilling, CreatedAt: e.clk.Now()})
}
