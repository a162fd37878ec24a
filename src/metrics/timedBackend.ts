/**
 * Backend call latency: the backend seen through a proxy that times every call returning a promise (the
 * primitives and lifecycle changes; capabilities() and gauges() are synchronous and not timed). The
 * composition root wraps the backend once, before the services are built on it.
 */
import type { Backend } from '../backend/port.js';
import type { Metrics } from './metrics.js';

export function timedBackend(backend: Backend, metrics: Pick<Metrics, 'observeBackendCall'>): Backend {
  const wrapped = new Map<PropertyKey, unknown>();
  return new Proxy(backend, {
    get(target, property) {
      const value: unknown = Reflect.get(target, property, target);
      if (typeof value !== 'function' || property === 'constructor') return value;
      let timed = wrapped.get(property);
      if (!timed) {
        const primitive = String(property);
        timed = (...args: unknown[]) => {
          const started = performance.now();
          const result: unknown = (value as (...a: unknown[]) => unknown).apply(target, args);
          if (!(result instanceof Promise)) return result;
          const done = () => metrics.observeBackendCall(target.kind, primitive, (performance.now() - started) / 1000);
          result.then(done, done);
          return result;
        };
        wrapped.set(property, timed);
      }
      return timed;
    },
  });
}
