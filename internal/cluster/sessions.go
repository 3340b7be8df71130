package cluster

import (
	"context"
	"fmt"

	"github.com/gridbell/gridbell/internal/store"
)

// Session is an instance's persistent MQTT session: its client id. The
// broker queues a share of the $share messages for it while the instance
// is away, and gives them to nobody else.
type Session struct {
	Instance string
	ClientID string
}

// RegisterSession notes that instance takes MQTT under clientID in a
// persistent session.
func RegisterSession(ctx context.Context, db *store.DB, instance, clientID string) error {
	_, err := db.ExecContext(ctx, `INSERT INTO cluster_mqtt_sessions (instance, client_id) VALUES ($1, $2)
		ON CONFLICT (instance) DO UPDATE SET client_id = excluded.client_id`, instance, clientID)
	if err != nil {
		return fmt.Errorf("cannot record this instance's mqtt session: %w", err)
	}
	return nil
}

// ForgetSession drops instance's session record: it stopped gracefully
// (it left the shared subscription), or another instance drained and
// discarded its session.
func ForgetSession(ctx context.Context, db *store.DB, s Session) error {
	_, err := db.ExecContext(ctx, `DELETE FROM cluster_mqtt_sessions WHERE instance = $1 AND client_id = $2`, s.Instance, s.ClientID)
	if err != nil {
		return fmt.Errorf("cannot forget the mqtt session of %s: %w", s.Instance, err)
	}
	return nil
}

// StrandedSessions returns the sessions of instances whose instance lease
// has lapsed (a dead instance), by the store's clock: their share of MQTT
// waits in the broker.
func StrandedSessions(ctx context.Context, db *store.DB) ([]Session, error) {
	rows, err := db.QueryContext(ctx, `SELECT s.instance, s.client_id FROM cluster_mqtt_sessions s
		WHERE NOT EXISTS (SELECT 1 FROM store_leases l WHERE l.name = 'instance:' || s.instance AND l.expires > `+db.NowSQL()+`)
		ORDER BY s.instance`)
	if err != nil {
		return nil, fmt.Errorf("cannot read the mqtt sessions: %w", err)
	}
	defer rows.Close()
	var out []Session
	for rows.Next() {
		var s Session
		if err := rows.Scan(&s.Instance, &s.ClientID); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// Alive reports whether instance's lease is current, by the store's clock.
func Alive(ctx context.Context, db *store.DB, instance string) (bool, error) {
	var n int
	err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM store_leases WHERE name = $1 AND expires > `+db.NowSQL(), "instance:"+instance).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("cannot read the lease of %s: %w", instance, err)
	}
	return n > 0, nil
}
