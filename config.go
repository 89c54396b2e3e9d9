package dfaas

import (
	"fmt"
	"log/slog"
	"time"
)

// Config tunes an Agent. The zero value of every field means its default.
type Config struct {
	// Interval between control ticks. Default 1 s.
	Interval time.Duration
	// TTL of this node's adverts: a peer that stays silent this long leaves
	// every plan. Default 3 × Interval.
	TTL time.Duration
	// Holdoff is the least time between two ticks run early on a Trigger.
	// Default Interval / 10.
	Holdoff time.Duration
	// Addr is the host:port of this node's proxy peer listener, advertised to
	// peers. Required.
	Addr string
	// Name is this node's name for people, advertised beside its id
	// (Advert.Name). Optional; see ValidateNodeName.
	Name string
	// Logger receives the agent's logs. Default slog.Default().
	Logger *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Sequencer numbers this node's adverts. Default: from the start time
	// in nanoseconds, which holds across restarts only while the clock
	// never goes back; a Sequencer that persists its numbers
	// (overlay.SeqFile) holds whatever the clock does.
	Sequencer Sequencer
}

// DefaultConfig returns a Config with every default filled in except Addr.
func DefaultConfig() Config {
	return Config{
		Interval: time.Second,
		TTL:      3 * time.Second,
		Holdoff:  100 * time.Millisecond,
		Logger:   slog.Default(),
		Now:      time.Now,
	}
}

// withDefaults fills zero fields from DefaultConfig, scaling TTL and Holdoff
// with a non-default Interval.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.Interval == 0 {
		c.Interval = d.Interval
	}
	if c.TTL == 0 {
		c.TTL = 3 * c.Interval
	}
	if c.Holdoff == 0 {
		c.Holdoff = c.Interval / 10
	}
	if c.Logger == nil {
		c.Logger = d.Logger
	}
	if c.Now == nil {
		c.Now = d.Now
	}
	return c
}

// Validate reports the first invalid field, after defaults are applied.
func (c Config) Validate() error {
	c = c.withDefaults()
	switch {
	case c.Interval < time.Millisecond:
		return fmt.Errorf("%w: interval %v below 1ms", ErrInvalidConfig, c.Interval)
	case c.TTL < c.Interval || c.TTL > MaxAdvertTTL:
		return fmt.Errorf("%w: ttl %v outside [interval %v, %v]", ErrInvalidConfig, c.TTL, c.Interval, MaxAdvertTTL)
	case c.Holdoff < 0 || c.Holdoff > c.Interval:
		return fmt.Errorf("%w: holdoff %v outside [0, interval %v]", ErrInvalidConfig, c.Holdoff, c.Interval)
	case ValidateAddr(c.Addr) != nil:
		return fmt.Errorf("%w: %w", ErrInvalidConfig, ValidateAddr(c.Addr))
	case ValidateNodeName(c.Name) != nil:
		return fmt.Errorf("%w: %w", ErrInvalidConfig, ValidateNodeName(c.Name))
	}
	return nil
}
