package dfaas

import "errors"

// Named errors. Implementations wrap them with an operation prefix, so test
// them with errors.Is.
var (
	// ErrClosed is returned by operations on a closed Agent, Overlay or proxy.
	ErrClosed = errors.New("dfaas: closed")
	// ErrInvalidAdvert marks an advert that fails validation.
	ErrInvalidAdvert = errors.New("dfaas: invalid advert")
	// ErrStaleAdvert marks an advert whose sequence number is not newer than
	// one already accepted from the same node.
	ErrStaleAdvert = errors.New("dfaas: stale advert")
	// ErrUnknownFunction marks a function that no node of the federation
	// serves.
	ErrUnknownFunction = errors.New("dfaas: unknown function")
	// ErrInvalidConfig marks a configuration that fails Validate.
	ErrInvalidConfig = errors.New("dfaas: invalid config")
	// ErrInvalidAddr marks a peer address that is not a plain host:port.
	ErrInvalidAddr = errors.New("dfaas: invalid address")
	// ErrInvalidName marks a function name that is not a DNS-1123 label.
	ErrInvalidName = errors.New("dfaas: invalid function name")
	// ErrDegraded marks an error that comes with a usable result: a Monitor
	// whose FaaS platform does not answer returns a Sample that gives its
	// functions no capacity, with an error wrapping ErrDegraded. The Agent
	// then plans with the sample, so peers stop sending work the node cannot
	// serve, and reports the error in its Status.
	ErrDegraded = errors.New("dfaas: degraded")
)
