/**
 * The scale run's chart: durable throughput and lag (p50, p99, against the
 * 1 s goal) per bucket, as SVG. Drawn by vega-lite + vega, headless
 * (renderer 'none', no canvas, no native code). Both are optional packages,
 * imported only here and only when a chart is asked for: a production install
 * (npm ci --omit=dev --omit=optional) has neither and still runs the bench.
 */
import { SluiceError } from '../../errors.js';
import type { ScaleBucket } from './scale-report.js';

interface VegaModules {
  readonly vega: typeof import('vega');
  readonly vegaLite: typeof import('vega-lite');
}

async function loadVega(): Promise<VegaModules> {
  try {
    const [vega, vegaLite] = await Promise.all([import('vega'), import('vega-lite')]);
    return { vega, vegaLite };
  } catch (err) {
    throw new SluiceError(
      'missing_optional_package',
      'the scale chart needs the optional packages vega and vega-lite, which this install left out (npm ci --omit=optional): npm install vega vega-lite, or pass --no-chart',
      { cause: err },
    );
  }
}

/** Throws missing_optional_package (before a long run, not after it) when the chart cannot be drawn. */
export async function assertChartAvailable(): Promise<void> {
  await loadVega();
}

/** A vega-lite spec: throughput above, lag below, x = events pushed at the end of each bucket. */
export function scaleChartSpec(buckets: readonly ScaleBucket[], title: string): Record<string, unknown> {
  const x = { field: 'events', type: 'quantitative', title: 'events pushed', axis: { format: '~s' } };
  const throughput = buckets.map((b) => ({ events: b.events_to, value: b.durable_events_per_s }));
  const lag = buckets.flatMap((b) =>
    b.lag_ms ? [{ events: b.events_to, series: 'p50', value: b.lag_ms.p50 }, { events: b.events_to, series: 'p99', value: b.lag_ms.p99 }] : [],
  );
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title,
    vconcat: [
      {
        width: 560,
        height: 180,
        data: { values: throughput },
        mark: { type: 'line', point: true },
        encoding: { x, y: { field: 'value', type: 'quantitative', title: 'durable events/s', scale: { zero: true } } },
      },
      {
        width: 560,
        height: 180,
        layer: [
          {
            data: { values: lag },
            mark: { type: 'line', point: true },
            encoding: {
              x,
              y: { field: 'value', type: 'quantitative', title: 'lag push → durable (ms)', scale: { zero: true } },
              color: { field: 'series', type: 'nominal', title: 'lag' },
            },
          },
          { data: { values: [{ goal: 1000 }] }, mark: { type: 'rule', strokeDash: [4, 4], color: 'gray' }, encoding: { y: { field: 'goal', type: 'quantitative' } } },
        ],
      },
    ],
  };
}

export async function renderScaleChart(buckets: readonly ScaleBucket[], title: string): Promise<string> {
  const { vega, vegaLite } = await loadVega();
  const compiled = vegaLite.compile(scaleChartSpec(buckets, title) as unknown as Parameters<typeof vegaLite.compile>[0]).spec;
  const view = new vega.View(vega.parse(compiled), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}
