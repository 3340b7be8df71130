package ingest

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/gridbell/gridbell/internal/metrics"
)

// ingest's metrics (docs/metrics.md). The series of every source and
// reason exist from the start.
var (
	rejectedVec = metrics.Default.CounterVec("gridbell_ingest_rejected_total",
		"Messages or array elements rejected by ingest (and kept as dead letters), by source and reason.", "source", "reason")
	acceptedVec = metrics.Default.CounterVec("gridbell_ingest_events_total",
		"Events decoded and handed on by ingest, by source.", "source")
	lateVec = metrics.Default.CounterVec("gridbell_ingest_late_events_total",
		"Events handed on although stamped older than ingest.late_after, by source.", "source")
	unknownReadings = metrics.Default.Counter("gridbell_unknown_meter_readings_total",
		"Readings from meters not in the contacts file (kept, written to InfluxDB, never an SMS).")
	mqttConnected = metrics.Default.Gauge("gridbell_mqtt_connected",
		"1 while the MQTT client is connected to a broker, else 0.")
	mqttLost = metrics.Default.Counter("gridbell_mqtt_connection_lost_total",
		"MQTT connections lost (each is retried).")
	mqttTakeovers = metrics.Default.Counter("gridbell_mqtt_session_takeovers_total",
		"MQTT connections the broker closed and at once took a reconnect for: most likely another client connecting with gridbell's client id.")
	mqttMaxInflight = metrics.Default.Gauge("gridbell_mqtt_max_inflight",
		"mqtt.max_inflight: the MQTT messages gridbell takes before it acknowledges any; beyond it the broker queues them for the session.")
	mqttUnackedGauge = metrics.Default.GaugeFunc("gridbell_mqtt_unacked_messages",
		"MQTT messages taken and not yet acknowledged (stored); at gridbell_mqtt_max_inflight the broker queues the rest for the session.",
		func() float64 {
			if w := mqttUnacked.Load(); w != nil {
				return float64(len(*w))
			}
			return 0
		})
	_ = metrics.Default.CounterFunc("gridbell_mqtt_broker_dropped_total",
		"Messages the embedded MQTT broker dropped for a subscriber that fell behind (its queue full), since it started; 0 with an outside broker (docs/deploy.md: read the broker's own count).",
		brokerDropped.sum)
	_ = metrics.Default.GaugeFunc("gridbell_mqtt_last_message_age_seconds",
		"Seconds since gridbell last took an MQTT message (since the input started, before the first).",
		func() float64 {
			if at := mqttLastTaken.Load(); at != 0 {
				return time.Since(time.Unix(0, at)).Seconds()
			}
			return 0
		})
	kafkaLag = metrics.Default.GaugeVec("gridbell_kafka_consumer_lag",
		"Messages behind the newest offset, summed over the partitions this instance consumes, by topic; as of the last committed batch.", "topic")

	influxWritten = metrics.Default.Counter("gridbell_influx_points_written_total",
		"Readings written to InfluxDB (a retried batch counts once).")
	influxDropped = metrics.Default.Counter("gridbell_influx_points_dropped_total",
		"Readings not written to InfluxDB: spool full, or rejected by InfluxDB.")
	influxLostAtShutdown = metrics.Default.Counter("gridbell_influx_points_lost_at_shutdown_total",
		"Readings held in memory at shutdown that the disk could not take (full) for the next run; also counted as dropped.")
	influxErrors = metrics.Default.Counter("gridbell_influx_write_errors_total",
		"Failed batch writes to InfluxDB (each is retried).")
	influxSpool = metrics.Default.Gauge("gridbell_influx_spool_bytes",
		"Bytes of readings waiting on disk for InfluxDB.")
	influxSpoolMax = metrics.Default.Gauge("gridbell_influx_spool_max_bytes",
		"The spool's cap (influx.spool_max_bytes); readings beyond it are dropped. 0 while the sink is off.")
)

// droppedCounts are the embedded broker's counters of dropped messages.
type droppedCounts struct {
	mu     sync.Mutex
	counts []*int64
}

// Store makes the counts of the running broker the ones summed.
func (d *droppedCounts) Store(counts ...*int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.counts = counts
}

func (d *droppedCounts) sum() float64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	var n int64
	for _, c := range d.counts {
		n += atomic.LoadInt64(c)
	}
	return float64(n)
}

// The MQTT input's state the scrape-time gauges read.
var (
	brokerDropped droppedCounts
	mqttLastTaken atomic.Int64                  // unix nanos of the last message taken
	mqttUnacked   atomic.Pointer[chan struct{}] // the running input's window
)

var sources = []string{SourceMQTT, SourceKafka, SourceHTTP, SourceReplay}

func init() {
	for _, s := range sources {
		for _, r := range []string{ReasonTooLarge, ReasonBadJSON, ReasonBadTopic, ReasonMissing, ReasonBadField, ReasonBadTime,
			ReasonFuture, ReasonPast, ReasonOverLimit, ReasonUnstorable} {
			rejectedVec.WithLabelValues(s, r)
		}
		acceptedVec.WithLabelValues(s)
		lateVec.WithLabelValues(s)
	}
}

// lagTracker keeps the lag of each partition a Kafka consumer read last and
// publishes their sum per topic.
type lagTracker struct {
	mu  sync.Mutex // guards lag
	lag map[string]map[int]int64
}

func newLagTracker(topics ...string) *lagTracker {
	t := &lagTracker{lag: map[string]map[int]int64{}}
	for _, topic := range topics {
		t.lag[topic] = map[int]int64{}
		kafkaLag.WithLabelValues(topic).Set(0)
	}
	return t
}

// set records that partition of topic is lag messages behind.
func (t *lagTracker) set(topic string, partition int, lag int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.lag[topic]
	if p == nil {
		p = map[int]int64{}
		t.lag[topic] = p
	}
	p[partition] = max(0, lag)
	var sum int64
	for _, v := range p {
		sum += v
	}
	kafkaLag.WithLabelValues(topic).Set(float64(sum))
}

// reset forgets every partition: the group's generation ended, and the
// next one may assign others.
func (t *lagTracker) reset() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for topic, p := range t.lag {
		clear(p)
		kafkaLag.WithLabelValues(topic).Set(0)
	}
}

// Distributed mode's forwarding (forward.go).
var (
	forwardedRecords = metrics.Default.Counter("gridbell_cluster_forwarded_records_total",
		"Distributed mode: records this instance wrote to the meter topic.")
	forwardedEvents = metrics.Default.Counter("gridbell_cluster_forwarded_events_total",
		"Distributed mode: events this instance forwarded to the meter topic.")
	forwardFailures = metrics.Default.Counter("gridbell_cluster_forward_failures_total",
		"Distributed mode: writes to the meter topic that failed (the input waits and is offered again).")
	meterConsumed = metrics.Default.Counter("gridbell_cluster_consumed_events_total",
		"Distributed mode: meter-topic events applied by the rules on this instance.")
	meterBadRecords = metrics.Default.Counter("gridbell_cluster_bad_records_total",
		"Distributed mode: meter-topic records that could not be decoded (kept as dead letters).")
)
