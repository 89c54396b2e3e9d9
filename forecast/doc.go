// Package forecast holds Forecaster implementations that predict each
// function's user demand for the next control interval from past samples.
//
// Forecasters are not safe for concurrent use: the Agent calls them from its
// control loop only.
package forecast
