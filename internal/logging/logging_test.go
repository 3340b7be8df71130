package logging

import "testing"

func TestPhone(t *testing.T) {
	f := func(in, want string) {
		t.Helper()
		if got := Phone(in); got != want {
			t.Errorf("Phone(%q) = %q, want %q", in, got, want)
		}
	}
	f("+8613812345678", "+86138****5678")
	f("13812345678", "138****5678")
	f("+14155550100", "+14155****0100")
	f("", "****")
	f("12345", "****")
}
