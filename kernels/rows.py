"""Rows of the packed parameter matrix ``P`` (sets x N_PARAM_ROWS, float64; dtb.model.neurons
.pack makes it): what the kernels read as ``P[set, ROW]``.  The CUDA kernels (dynamics.cu)
read the same rows by number."""

# iaf_psc_exp
(R_P22, R_P20, R_P21EX, R_P21IN, R_P11EX, R_P11IN, R_THETA, R_VRESET_REL, R_NREF, R_IE,
 R_EL) = range(11)
# lif_cond
(L_C, L_GL, L_VL, L_VTH, L_VRESET, L_NREF, L_IE, L_MG_ON, L_MG) = range(9)
L_G0 = 9  # 4 rows: g_u
L_E0 = 13  # 4 rows: reversal potentials
L_DECAY0 = 17  # 4 rows: exp(-dt / tau_u)
L_GA = 21  # g_adapt: adaptation conductance per unit of its trace
L_EA = 22  # E_adapt
L_DECAYA = 23  # exp(-dt / tau_adapt)
