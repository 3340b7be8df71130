package twiliotest

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func TestServerChecks(t *testing.T) {
	s := New("AC1", "tok")
	defer s.Close()
	post := func(user, pass string, form url.Values) (int, map[string]any) {
		req, _ := http.NewRequest("POST", s.URL+"/2010-04-01/Accounts/AC1/Messages.json", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]any
		json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode, body
	}
	ok := url.Values{"To": {"+8613812345678"}, "Body": {"hi"}, "From": {"+15005550006"}}
	f := func(user, pass string, form url.Values, wantStatus int, wantCode float64) {
		t.Helper()
		status, body := post(user, pass, form)
		if status != wantStatus || (wantCode != 0 && body["code"] != wantCode) {
			t.Errorf("POST %v as %q = %d %v, want %d code %v", form, user, status, body, wantStatus, wantCode)
		}
	}
	f("", "", ok, 401, 20003)
	f("AC1", "wrong", ok, 401, 20003)
	f("AC1", "tok", url.Values{"To": {"13812345678"}, "Body": {"hi"}, "From": {"+15005550006"}}, 400, 21211)
	f("AC1", "tok", url.Values{"To": {"+8613812345678"}, "Body": {"hi"}}, 400, 21603)
	f("AC1", "tok", url.Values{"To": {"+8613812345678"}, "From": {"+15005550006"}}, 400, 21602)
	f("AC1", "tok", url.Values{"To": {"+8613812345678"}, "Body": {"hi"}, "MessagingServiceSid": {"MG1"}, "StatusCallback": {"ftp://x"}}, 400, 21609)
	f("AC1", "tok", ok, 201, 0)
	s.FailNext(1, TooMany)
	f("AC1", "tok", ok, 429, 20429)
	if got := s.Received(); len(got) != 1 || !strings.HasPrefix(got[0].SID, "SM") || got[0].To != "+8613812345678" {
		t.Errorf("received %+v", got)
	}
}
