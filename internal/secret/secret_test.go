package secret

import (
	"encoding/json"
	"fmt"
	"testing"
)

func TestSecretNeverPrints(t *testing.T) {
	s := String("hunter2")
	for _, got := range []string{fmt.Sprint(s), fmt.Sprintf("%v %s %#v", s, s, s)} {
		if got != "***" && got != "*** *** ***" {
			t.Errorf("printed secret as %q", got)
		}
	}
	b, _ := json.Marshal(struct{ T String }{s})
	if string(b) != `{"T":"***"}` {
		t.Errorf("json = %s", b)
	}
	if s.Reveal() != "hunter2" {
		t.Errorf("Reveal() = %q", s.Reveal())
	}
}
