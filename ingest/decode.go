package ingest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/gridbell/gridbell/internal/event"
)

// Rejection reasons. They are the reason label of
// gridbell_ingest_rejected_total and the reason kept with a dead letter, so
// the set is small and fixed; Rejection.Detail says what exactly was wrong.
const (
	ReasonTooLarge  = "too_large"     // payload over Limits.MaxPayload
	ReasonBadJSON   = "bad_json"      // not JSON, or not the object/array expected
	ReasonBadTopic  = "bad_topic"     // an MQTT topic that is none of the four forms
	ReasonMissing   = "missing_field" // a required field is absent, null or empty
	ReasonBadField  = "bad_field"     // wrong type, unknown enum value, out of range
	ReasonBadTime   = "bad_time"      // a time that is not RFC 3339
	ReasonFuture    = "future"        // event time more than Limits.MaxFuture ahead, or a planned time beyond Limits.MaxAhead
	ReasonPast      = "past"          // a time older than Limits.MaxPast
	ReasonOverLimit = "over_limit"    // a list or text longer than its limit (Limits.MaxAreas, MaxCause…)
)

// Rejection is one rejected message, or one rejected element of an array.
type Rejection struct {
	Index  int    `json:"index"`  // element of an array; -1 for the whole payload
	Reason string `json:"reason"` // one of the Reason constants
	Detail string `json:"detail"`
	Raw    []byte `json:"-"` // the rejected bytes: the element, or the whole payload
}

func (r Rejection) Error() string {
	if r.Index >= 0 {
		return fmt.Sprintf("element %d: %s: %s", r.Index, r.Reason, r.Detail)
	}
	return r.Reason + ": " + r.Detail
}

// DecodeError is returned by the decoders when anything was rejected. The
// events decoded from the other elements of an array are still returned
// beside it: one bad reading never holds back a concentrator's batch.
type DecodeError struct {
	Rejections []Rejection
}

func (e *DecodeError) Error() string {
	if len(e.Rejections) == 1 {
		return "cannot decode payload: " + e.Rejections[0].Error()
	}
	return fmt.Sprintf("cannot decode %d elements; first: %s", len(e.Rejections), e.Rejections[0].Error())
}

// Rejections returns the rejections carried by err, or nil when err is not
// a *DecodeError.
func Rejections(err error) []Rejection {
	var de *DecodeError
	if errors.As(err, &de) {
		return de.Rejections
	}
	return nil
}

// maxDetail bounds a rejection's detail, which quotes the sender's values:
// a 1 MB "type" must not become a 1 MB log line and dead-letter reason.
const maxDetail = 300

func reject(idx int, reason, format string, args ...any) *Rejection {
	d := fmt.Sprintf(format, args...)
	if len(d) > maxDetail {
		d = strings.ToValidUTF8(d[:maxDetail], "") + "…"
	}
	return &Rejection{Index: idx, Reason: reason, Detail: d}
}

func wholeError(reason string, raw []byte, format string, args ...any) error {
	r := reject(-1, reason, format, args...)
	r.Raw = raw
	return &DecodeError{Rejections: []Rejection{*r}}
}

// maxIDLen bounds meter, concentrator, outage and account ids.
const maxIDLen = 64

// topicForm is the shape of an MQTT topic under the prefix.
type topicForm int

const (
	formReading topicForm = iota + 1
	formReadings
	formMeterEvent
	formConcentratorEvent
)

// parseTopic splits topic into its form, concentrator and meter.
func parseTopic(prefix, topic string) (form topicForm, conc, meter string, ok bool) {
	prefix = strings.TrimSuffix(prefix, "/")
	rest := topic
	if prefix != "" {
		if !strings.HasPrefix(topic, prefix+"/") {
			return 0, "", "", false
		}
		rest = topic[len(prefix)+1:]
	}
	// At most four segments: split without allocating.
	var segs [4]string
	n := 0
	for n < len(segs) {
		seg, after, more := strings.Cut(rest, "/")
		if seg == "" || len(seg) > maxIDLen {
			return 0, "", "", false
		}
		segs[n], n, rest = seg, n+1, after
		if !more {
			break
		}
		if n == len(segs) {
			return 0, "", "", false
		}
	}
	switch {
	case n == 2 && segs[1] == "readings":
		return formReadings, segs[0], "", true
	case n == 2 && segs[1] == "event":
		return formConcentratorEvent, segs[0], "", true
	case n == 3 && segs[2] == "reading":
		return formReading, segs[0], segs[1], true
	case n == 3 && segs[2] == "event":
		return formMeterEvent, segs[0], segs[1], true
	}
	return 0, "", "", false
}

// DecodeMQTT decodes one MQTT message of any of the four topic forms under
// prefix (docs/interfaces.md §1). The batch topic takes an array (a single object is
// accepted too); the others take one object. The concentrator, and the meter
// where the topic names one, come from the topic; a payload naming another
// meter or concentrator is rejected. On rejection the error is a
// *DecodeError, and the valid elements of a batch are returned beside it.
//
// Plain, valid readings take the fast decoder (decode_fast.go); anything
// else, every rejection included, takes encoding/json (decodeMQTTGeneral),
// so the results are the same either way.
func DecodeMQTT(prefix, topic string, payload []byte, now time.Time, lim Limits) ([]event.Event, error) {
	// At most one reading per '{': room for them all, within reason.
	n := min(max(bytes.Count(payload, []byte{'{'}), 1), readingChunk*16)
	d := readingDecoder{chunk: n}
	return d.appendMQTT(make([]event.Event, 0, n), prefix, topic, payload, now, lim)
}

// decodeMQTTGeneral is DecodeMQTT through encoding/json, for every payload.
func decodeMQTTGeneral(prefix, topic string, payload []byte, now time.Time, lim Limits) ([]event.Event, error) {
	v, err := newValidator(payload, now, lim)
	if err != nil {
		return nil, err
	}
	form, conc, meter, ok := parseTopic(prefix, topic)
	if !ok {
		return nil, wholeError(ReasonBadTopic, payload, "topic %q is not %s/{concentrator}/{meter}/reading|event or %s/{concentrator}/readings|event", topic, prefix, prefix)
	}
	switch form {
	case formReading:
		return decodeList(payload, false, func(r *rawReading, i int) (event.Event, *Rejection) {
			return v.reading(r, i, conc, meter)
		})
	case formReadings:
		return decodeList(payload, true, func(r *rawReading, i int) (event.Event, *Rejection) {
			return v.reading(r, i, conc, "")
		})
	case formMeterEvent:
		return decodeList(payload, false, func(r *rawMeterEvent, i int) (event.Event, *Rejection) {
			return v.meterEvent(r, i, conc, meter)
		})
	default:
		return decodeList(payload, false, func(r *rawConcentratorEvent, i int) (event.Event, *Rejection) {
			return v.concentratorEvent(r, i, conc)
		})
	}
}

// DecodeOMS decodes one OMS outage message or an array of them (docs/interfaces.md §2).
// Source is left empty for the caller to set.
func DecodeOMS(payload []byte, now time.Time, lim Limits) ([]event.Event, error) {
	v, err := newValidator(payload, now, lim)
	if err != nil {
		return nil, err
	}
	return decodeList(payload, true, v.outage)
}

// DecodeBilling decodes one billing message or an array of them (docs/interfaces.md §2).
// Source is left empty for the caller to set.
func DecodeBilling(payload []byte, now time.Time, lim Limits) ([]event.Event, error) {
	v, err := newValidator(payload, now, lim)
	if err != nil {
		return nil, err
	}
	return decodeList(payload, true, v.billing)
}

// newValidator returns the validator of payload at time now under lim (its
// zero fields defaulted), or the rejection of a payload over lim.MaxPayload.
func newValidator(payload []byte, now time.Time, lim Limits) (validator, error) {
	lim.Defaults()
	if len(payload) > lim.MaxPayload {
		return validator{}, wholeError(ReasonTooLarge, payload, "payload of %d bytes is over the limit of %d", len(payload), lim.MaxPayload)
	}
	return validator{now: now, lim: lim}, nil
}

// decodeList decodes payload, one JSON object or (when arrays is set) an
// array of them, converting each with conv. The fast path decodes the whole
// array at once; only when something is wrong does it split the array to
// find and keep each bad element's own bytes.
func decodeList[T any](payload []byte, arrays bool, conv func(*T, int) (event.Event, *Rejection)) ([]event.Event, error) {
	first := firstByte(payload)
	switch {
	case first == '{':
		var raw T
		if err := json.Unmarshal(payload, &raw); err != nil {
			return nil, jsonRejection(err, -1, payload)
		}
		ev, rej := conv(&raw, -1)
		if rej != nil {
			rej.Raw = payload
			return nil, &DecodeError{Rejections: []Rejection{*rej}}
		}
		return []event.Event{ev}, nil
	case first == '[' && arrays:
	case first == '[':
		return nil, wholeError(ReasonBadJSON, payload, "want one JSON object, got an array")
	default:
		return nil, wholeError(ReasonBadJSON, payload, "want a JSON object or array")
	}
	var raws []T
	if err := json.Unmarshal(payload, &raws); err == nil {
		evs := make([]event.Event, 0, len(raws))
		for i := range raws {
			ev, rej := conv(&raws[i], i)
			if rej != nil {
				return decodeSplit(payload, conv)
			}
			evs = append(evs, ev)
		}
		return evs, nil
	}
	return decodeSplit(payload, conv)
}

// decodeSplit is the slow path of decodeList for an array with bad elements.
func decodeSplit[T any](payload []byte, conv func(*T, int) (event.Event, *Rejection)) ([]event.Event, error) {
	var elems []json.RawMessage
	if err := json.Unmarshal(payload, &elems); err != nil {
		return nil, jsonRejection(err, -1, payload)
	}
	var evs []event.Event
	var rejs []Rejection
	for i, el := range elems {
		if firstByte(el) != '{' {
			rejs = append(rejs, Rejection{Index: i, Reason: ReasonBadJSON, Detail: "element is not a JSON object", Raw: el})
			continue
		}
		var raw T
		if err := json.Unmarshal(el, &raw); err != nil {
			rejs = append(rejs, Rejections(jsonRejection(err, i, el))...)
			continue
		}
		ev, rej := conv(&raw, i)
		if rej != nil {
			rej.Raw = el
			rejs = append(rejs, *rej)
			continue
		}
		evs = append(evs, ev)
	}
	if len(rejs) == 0 {
		return evs, nil
	}
	return evs, &DecodeError{Rejections: rejs}
}

func firstByte(b []byte) byte {
	b = bytes.TrimLeft(b, " \t\r\n")
	if len(b) == 0 {
		return 0
	}
	return b[0]
}

// jsonRejection turns an encoding/json error into a rejection.
func jsonRejection(err error, idx int, raw []byte) error {
	var te *json.UnmarshalTypeError
	r := Rejection{Index: idx, Reason: ReasonBadJSON, Detail: err.Error(), Raw: raw}
	if errors.As(err, &te) {
		r.Reason = ReasonBadField
		r.Detail = fmt.Sprintf("field %s: want %s, got JSON %s", te.Field, te.Type, te.Value)
	}
	return &DecodeError{Rejections: []Rejection{r}}
}
