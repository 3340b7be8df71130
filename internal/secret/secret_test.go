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

func TestMaskURL(t *testing.T) {
	f := func(in, want string) {
		t.Helper()
		if got := MaskURL(in); got != want {
			t.Errorf("MaskURL(%q) = %q, want %q", in, got, want)
		}
	}
	f("", "")
	f("postgres://gridbell:pg-SECRET@db:5432/g?sslmode=disable", "postgres://gridbell:***@db:5432/g?sslmode=disable")
	f("postgres://db/g?user=gridbell&password=pg-SECRET&sslmode=require", "postgres://db/g?user=gridbell&password=***&sslmode=require")
	f("http://admin:influx-SECRET@influx.example:8086", "http://admin:***@influx.example:8086")
	f("tcp://headend:p%40ss@broker:1883", "tcp://headend:***@broker:1883")
	f("host=db user=gridbell password=pg-SECRET dbname=g", "host=db user=gridbell password=*** dbname=g")
	f("host=db password='pg SECRET' dbname=g", "host=db password=*** dbname=g")
	f("postgres://gridbell:pa%ZZss@db/g", "postgres://gridbell:***@db/g") // does not parse
	f("postgres://db/g", "postgres://db/g")
	f("/var/lib/gridbell/gridbell.db", "/var/lib/gridbell/gridbell.db")
	f("tcp://broker:1883", "tcp://broker:1883")
}
