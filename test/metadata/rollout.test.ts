// Staged rollout membership: deterministic per node, about PERCENT % of nodes, and the latest a
// node sees is the highest release it is in.
import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { inRollout, latestForNode } from '../../src/metadata/rollout.js';

const nodes = Array.from({ length: 1000 }, () => randomUUID());

describe('rollout', () => {
  it('is about PERCENT % of nodes, and the same answer every time for one node', () => {
    for (const percent of [1, 10, 50, 90]) {
      const share = nodes.filter((n) => inRollout(n, 'svc', '2.0.0', percent)).length / nodes.length;
      expect(Math.abs(share * 100 - percent), `${percent} %`).toBeLessThan(5);
      for (const n of nodes.slice(0, 50)) expect(inRollout(n, 'svc', '2.0.0', percent)).toBe(inRollout(n, 'svc', '2.0.0', percent));
    }
    // Growing a rollout only adds nodes: who had it at 10 % still has it at 50 %.
    for (const n of nodes) if (inRollout(n, 'svc', '2.0.0', 10)) expect(inRollout(n, 'svc', '2.0.0', 50)).toBe(true);
  });

  it('0 % halts, 100 % completes; nodes outside see the previous latest', () => {
    expect(nodes.filter((n) => inRollout(n, 'svc', '2.0.0', 0))).toEqual([]);
    expect(nodes.every((n) => inRollout(n, 'svc', '2.0.0', 100))).toBe(true);
    const versions = { '1.0.0': { rollout: 100 }, '2.0.0': { rollout: 10 } };
    const latest = nodes.map((n) => latestForNode(versions, n, 'svc'));
    expect(new Set(latest)).toEqual(new Set(['1.0.0', '2.0.0']));
    for (const [i, n] of nodes.entries()) expect(latest[i]).toBe(inRollout(n, 'svc', '2.0.0', 10) ? '2.0.0' : '1.0.0');
    expect(latestForNode({ '1.0.0': { rollout: 100 }, '2.0.0': { rollout: 0 } }, nodes[0]!, 'svc')).toBe('1.0.0');
  });

  it('picks different nodes first for different releases', () => {
    const a = nodes.filter((n) => inRollout(n, 'svc', '2.0.0', 10));
    const b = nodes.filter((n) => inRollout(n, 'svc', '3.0.0', 10));
    const both = a.filter((n) => b.includes(n)).length;
    expect(both).toBeLessThan(a.length / 2);
  });
});
