// The reduction that ends the f32 decode GEMVs (gemv4 in matmul4.wgsl, gemv_rows in
// matmul_dense.wgsl, gemv8 in matmul_blockwise8.wgsl; included, not a module on its own). A
// row group is `lanes` consecutive invocations (a power of two, 8 to 64) of a 64-invocation
// workgroup; each holds partial sums of the group's 4 output rows, and the group's first lane
// gets the totals. With SUBGROUPS: a butterfly of subgroup shuffles over runs of
// min(lanes, subgroup size) invocations (subgroups are taken to be consecutive runs of
// local_invocation_index, as implementations lay them out), then the runs' sums in order through
// workgroup memory; otherwise a tree in workgroup memory. It has barriers: call it from uniform
// control flow. `sg_size` is unused without SUBGROUPS. (LLM.int8's int8_gemv reduces exact i32
// sums in the same pattern, on vec4<i32>.)
var<workgroup> row_group_red: array<vec4<f32>, 64>;

// The row group's sums of `acc`, valid on its first lane (lane == 0)
fn row_group_sum(acc_in: vec4<f32>, lid: u32, lane: u32, lanes: u32, sg_size: u32) -> vec4<f32> {
  var acc = acc_in;
#ifdef SUBGROUPS
  let run = min(lanes, sg_size);
  for (var o = 1u; o < run; o = o << 1u) { acc = acc + subgroupShuffleXor(acc, o); }
  if (lid % run == 0u) { row_group_red[lid / run] = acc; }
  workgroupBarrier();
  let first = lid / run;
  var sum = row_group_red[first];
  if (lane == 0u) {
    for (var t = 1u; t < lanes / run; t = t + 1u) { sum = sum + row_group_red[first + t]; }
  }
  return sum;
#else
  row_group_red[lid] = acc;
  workgroupBarrier();
  for (var st = lanes / 2u; st > 0u; st = st >> 1u) {
    if (lane < st) { row_group_red[lid] = row_group_red[lid] + row_group_red[lid + st]; }
    workgroupBarrier();
  }
  return row_group_red[lid];
#endif
}
