package main

import (
	"fmt"
	"strconv"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// The fleet of the reference rig: 2,000 concentrators × 100 meters, meter
// ids from 330000000000, one 15-minute round after another.
const (
	concentrators = 2000
	metersPer     = 100
	meterBase     = int64(330000000000)
	step          = 15 * time.Minute
)

var fleetStart = time.Date(2026, 11, 26, 0, 0, 0, 0, time.FixedZone("CST", 8*3600))

func concID(c int) string { return fmt.Sprintf("C-%04d", c) }

// workload is what the publisher sends.
type workload struct {
	n      int
	single bool
	conns  int
}

type message struct {
	topic   string
	payload []byte
}

// appendReading appends global meter g's reading of round r, with the
// reference rig's values (every one with decimals, so all consumers type
// them as floats).
func appendReading(b []byte, g int64, r int, ts string) []byte {
	kwh := float64(1000+g%9000) + float64(r)*0.25 + 0.01
	v := 215 + float64((g*7+int64(r))%100)/10 + 0.05
	c := float64((g*13+int64(r))%400)/10 + 0.15
	p := float64(int64(v*c))/1000 + 0.0005
	b = append(b, `{"meter":"`...)
	b = strconv.AppendInt(b, meterBase+g, 10)
	b = append(b, `","ts":"`...)
	b = append(b, ts...)
	b = append(b, `","kwh":`...)
	b = strconv.AppendFloat(b, kwh, 'f', 2, 64)
	b = append(b, `,"voltage":`...)
	b = strconv.AppendFloat(b, v, 'f', 2, 64)
	b = append(b, `,"current":`...)
	b = strconv.AppendFloat(b, c, 'f', 2, 64)
	b = append(b, `,"power_kw":`...)
	b = strconv.AppendFloat(b, p, 'f', 4, 64)
	return append(b, '}')
}

// messages lays the workload out in publishing order, before the clock
// starts.
func (w workload) messages() []message {
	size := concentrators * metersPer
	var msgs []message
	for i := 0; i < w.n; {
		r, c := i/size, (i%size)/metersPer
		ts := fleetStart.Add(time.Duration(r) * step).Format(time.RFC3339)
		if w.single {
			g := int64(i % size)
			msgs = append(msgs, message{fmt.Sprintf("ami/%s/%d/reading", concID(c), meterBase+g), appendReading(nil, g, r, ts)})
			i++
			continue
		}
		k := min(metersPer, w.n-i)
		b := []byte{'['}
		for m := range k {
			if m > 0 {
				b = append(b, ',')
			}
			b = appendReading(b, int64(i%size+m), r, ts)
		}
		msgs = append(msgs, message{"ami/" + concID(c) + "/readings", append(b, ']')})
		i += k
	}
	return msgs
}

// publish sends msgs at QoS 1 over conns connections, as fast as the
// broker acknowledges (up to 1,000 unacknowledged a connection).
func publish(broker string, conns int, msgs []message) error {
	clients := make([]paho.Client, conns)
	for i := range clients {
		o := paho.NewClientOptions().AddBroker(broker).SetClientID(fmt.Sprintf("gbbench-pub-%d", i)).
			SetCleanSession(true).SetAutoReconnect(false).SetKeepAlive(30 * time.Second)
		clients[i] = paho.NewClient(o)
		if t := clients[i].Connect(); t.Wait() && t.Error() != nil {
			return fmt.Errorf("cannot connect publisher: %w", t.Error())
		}
		defer clients[i].Disconnect(250)
	}
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	for k, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pending := make(chan paho.Token, 1000)
			done := make(chan struct{})
			go func() {
				defer close(done)
				for t := range pending {
					if t.Wait(); t.Error() != nil {
						select {
						case errs <- t.Error():
						default:
						}
					}
				}
			}()
			for j := k; j < len(msgs); j += len(clients) {
				pending <- c.Publish(msgs[j].topic, 1, false, msgs[j].payload)
			}
			close(pending)
			<-done
		}()
	}
	wg.Wait()
	select {
	case err := <-errs:
		return fmt.Errorf("cannot publish: %w", err)
	default:
		return nil
	}
}
