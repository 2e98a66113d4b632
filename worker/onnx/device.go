package onnx

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrBadDevice is returned by ParseDevice for text that names no device.
var ErrBadDevice = errors.New("onnx: bad device")

// Device kinds.
const (
	DeviceAuto = "auto" // CUDA when it can be added, else the CPU
	DeviceCPU  = "cpu"
	DeviceCUDA = "cuda"
)

// Device is where sessions run: Kind is DeviceAuto, DeviceCPU or DeviceCUDA; ID picks the GPU
// for CUDA and auto (0 for the first).
type Device struct {
	Kind string
	ID   int
}

// ParseDevice parses "auto", "cpu", "cuda" or "cuda:N" (N ≥ 0). The empty string means
// "auto". Errors wrap ErrBadDevice and say what was wrong.
func ParseDevice(s string) (Device, error) {
	text := strings.ToLower(strings.TrimSpace(s))
	kind, id, hasID := strings.Cut(text, ":")
	switch kind {
	case "":
		if hasID {
			return Device{}, fmt.Errorf("%w %q: missing device kind before ':'", ErrBadDevice, s)
		}
		return Device{Kind: DeviceAuto}, nil
	case DeviceAuto, DeviceCPU:
		if hasID {
			return Device{}, fmt.Errorf("%w %q: %s takes no device id (only cuda:N does)", ErrBadDevice, s, kind)
		}
		return Device{Kind: kind}, nil
	case DeviceCUDA:
		if !hasID {
			return Device{Kind: DeviceCUDA}, nil
		}
		n, err := strconv.ParseUint(id, 10, 16)
		if err != nil {
			return Device{}, fmt.Errorf("%w %q: device id %q is not a number from 0 to 65535", ErrBadDevice, s, id)
		}
		return Device{Kind: DeviceCUDA, ID: int(n)}, nil
	}
	return Device{}, fmt.Errorf("%w %q: want auto, cpu, cuda or cuda:N", ErrBadDevice, s)
}

// String returns the text ParseDevice reads back: "auto", "cpu", "cuda" or "cuda:N".
func (d Device) String() string {
	switch {
	case d.Kind == "":
		return DeviceAuto
	case d.Kind == DeviceCUDA && d.ID != 0:
		return DeviceCUDA + ":" + strconv.Itoa(d.ID)
	}
	return d.Kind
}

// Set parses s into d, so a *Device is a flag.Value.
func (d *Device) Set(s string) error {
	v, err := ParseDevice(s)
	if err != nil {
		return err
	}
	*d = v
	return nil
}
