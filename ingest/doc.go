// Package ingest is the first stage of gridbell's flow (ingest → rules →
// notify). It takes meter readings and events from MQTT (AMI head-ends and
// HPLC concentrators), OMS and billing events from Kafka or HTTP, decodes and
// validates them, and hands them to a Handler (the rules engine). A message is
// acknowledged (MQTT PUBACK, Kafka offset commit, HTTP 202) only after the
// Handler says its effect is stored. Rejected input is never dropped: it goes
// to the dead-letter table with its reason. Valid readings are also copied to
// InfluxDB through InfluxSink, which never slows the notification path.
package ingest

import (
	"context"

	"github.com/gridbell/gridbell/internal/event"
)

// Handler receives decoded events. It returns only once their effect is
// durably stored (the rules engine implements it with group commit). Ingest
// acknowledges MQTT messages and commits Kafka offsets only after it returns
// nil. Handle may be called concurrently and with duplicates.
type Handler interface {
	Handle(ctx context.Context, evs []event.Event) error
}

// Directory is the contacts lookup ingest needs (implemented by
// *contacts.Registry).
type Directory interface {
	MeterArea(meter string) (area string, ok bool)
}
