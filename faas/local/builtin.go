package local

import (
	"fmt"
	"maps"
	"net/http"
	"slices"
	"time"

	"github.com/openfaas/faas-provider/types"

	"github.com/dfaas-go/dfaas/faas"
)

// EnvCost is the environment variable of a built-in image's deployment
// that sets its cost, as a Go duration ("10ms"). Default 10 ms.
const EnvCost = "cost"

// builtins are the Go handlers every Provider has, by image: functions with
// a real cost in CPU time (see faas.CPU), so that a node's capacity for
// them comes from its CPU budget.
var builtins = map[string]func(cost time.Duration) http.Handler{
	"dfaas/cpu":         faas.CPU,       // cost per call
	"dfaas/cpu-per-kib": faas.CPUPerKiB, // cost per KiB of request body
}

// BuiltinImages lists the images every Provider serves without
// registration, sorted: dfaas/cpu costs the CPU time its deployment's
// "cost" environment variable gives per call, dfaas/cpu-per-kib that much
// per KiB of request body.
func BuiltinImages() []string { return slices.Sorted(maps.Keys(builtins)) }

// builtin makes the handler of a deployment of a built-in image; ok is
// false if the image is not one.
func builtin(spec types.FunctionDeployment) (h http.Handler, ok bool, err error) {
	mk, ok := builtins[spec.Image]
	if !ok {
		return nil, false, nil
	}
	cost := 10 * time.Millisecond
	if v, set := spec.EnvVars[EnvCost]; set {
		if cost, err = time.ParseDuration(v); err != nil || cost <= 0 || cost > time.Minute {
			return nil, false, fmt.Errorf("image %s: %s=%q: want a duration such as 10ms, at most 1m", spec.Image, EnvCost, v)
		}
	}
	return mk(cost), true, nil
}
