package transport

// ObserverHeader names the one observer whose actions deliver the event in the
// message: a snapshot's rows read for one observer (snapshot --observer). The reader
// sets it from PublisherOptions.Observer; an executor hands such an event to its
// pipeline with pipeline.PushTargeted, which sends it to that observer alone. Absent:
// the event goes to every observer that matches it.
const ObserverHeader = "Fraiseql-Observer"
