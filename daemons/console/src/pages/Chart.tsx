import { CandlestickSeries, createChart, type CandlestickData, type ISeriesApi, type UTCTimestamp } from 'lightweight-charts';
import { useEffect, useRef, useState } from 'react';
import { request, subscribe } from '../api';
import { Choice, ErrorMessage } from '../components';
import { graphql, type ResultOf } from '../graphql';

const CandlesQuery = graphql(`
  query Candles($market: ID!, $interval: CandleInterval!) {
    candles(market: $market, interval: $interval, limit: 300) { time open high low close volume }
  }
`);

const CandlesSubscription = graphql(`
  subscription LiveCandles($market: ID!, $interval: CandleInterval!) {
    candles(market: $market, interval: $interval) { time open high low close volume }
  }
`);

type Candle = ResultOf<typeof CandlesQuery>['candles'][number];
type Interval = 'ONE_MINUTE' | 'FIVE_MINUTES' | 'FIFTEEN_MINUTES' | 'ONE_HOUR' | 'FOUR_HOURS' | 'ONE_DAY' | 'ONE_WEEK';

const INTERVALS: [Interval, string][] = [
  ['ONE_MINUTE', '1m'],
  ['FIVE_MINUTES', '5m'],
  ['FIFTEEN_MINUTES', '15m'],
  ['ONE_HOUR', '1h'],
  ['FOUR_HOURS', '4h'],
  ['ONE_DAY', '1d'],
  ['ONE_WEEK', '1w'],
];

/// Plotting only: a chart draws floats, the figures shown as text elsewhere stay decimal strings.
function toBar(candle: Candle): CandlestickData<UTCTimestamp> {
  return {
    time: Math.floor(Date.parse(candle.time) / 1000) as UTCTimestamp,
    open: Number(candle.open),
    high: Number(candle.high),
    low: Number(candle.low),
    close: Number(candle.close),
  };
}

/// The market's candles (TradingView's lightweight-charts), the one in progress kept live.
export function CandleChart({ market }: { market: string }) {
  const box = useRef<HTMLDivElement>(null);
  const series = useRef<ISeriesApi<'Candlestick'> | null>(null);
  const [interval, setInterval] = useState<Interval>('ONE_MINUTE');
  const [error, setError] = useState<unknown>(null);
  const [last, setLast] = useState<Candle | null>(null);

  useEffect(() => {
    if (!box.current) return;
    const dark = matchMedia('(prefers-color-scheme: dark)').matches || document.documentElement.dataset.theme === 'dark';
    const chart = createChart(box.current, {
      autoSize: true,
      // The logo injects a style element, which the console's CSP refuses; the attribution is on the About line instead.
      layout: { attributionLogo: false, background: { color: 'transparent' }, textColor: dark ? '#d0d4da' : '#1d232b' },
      grid: { vertLines: { color: dark ? '#2a3038' : '#e6e9ee' }, horzLines: { color: dark ? '#2a3038' : '#e6e9ee' } },
      timeScale: { timeVisible: true },
    });
    series.current = chart.addSeries(CandlestickSeries, { upColor: '#1a7f37', downColor: '#cf222e', borderVisible: false, wickUpColor: '#1a7f37', wickDownColor: '#cf222e' });
    return () => {
      series.current = null;
      chart.remove();
    };
  }, []);

  useEffect(() => {
    let live = true;
    setError(null);
    request(CandlesQuery, { market, interval }).then(
      (data) => {
        if (!live) return;
        series.current?.setData(data.candles.map(toBar));
        setLast(data.candles.at(-1) ?? null);
      },
      (failure) => live && setError(failure),
    );
    const stop = subscribe(
      CandlesSubscription,
      { market, interval },
      (data) => {
        series.current?.update(toBar(data.candles));
        setLast(data.candles);
      },
      setError,
    );
    return () => {
      live = false;
      stop();
    };
  }, [market, interval]);

  return (
    <div className="chart-panel">
      <div className="toolbar">
        <Choice label="Interval" options={INTERVALS} value={interval} onChange={setInterval} />
        {last ? (
          <p className="ohlc" aria-live="off">
            O {last.open} H {last.high} L {last.low} C {last.close} V {last.volume}
          </p>
        ) : null}
      </div>
      <ErrorMessage error={error} />
      <div className="chart" ref={box} role="img" aria-label={`${market} candle chart`} />
    </div>
  );
}
